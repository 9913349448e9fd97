"""Instruments on the KVM under test, run where L2's QEMU runs (in L1, or on a bare-metal
lab host): tracefs hist triggers that count what KVM did, and python-ptrace injection of
ioctls into QEMU's threads. Standard library, plus python-ptrace when injecting."""
