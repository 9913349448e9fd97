"""The L1 side of the lab: a service that runs L2 guests and measures their exits from
inside the hypervisor guest (hil.lab.kvm's instruments, hil.lab.stimuli's interrupt
sources). It depends only on the standard library, qemu.qmp, python-ptrace and the shipped
parts of hil.lab (hil/lab/assets/l1_image.py AGENT_FILES), so the same code runs in L1 and
on a bare-metal lab host."""
