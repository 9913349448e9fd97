"""hil: a hardware-in-the-loop harness for KVM interrupt virtualization."""

__version__ = "0.1.0"
