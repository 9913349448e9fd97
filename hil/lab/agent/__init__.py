"""The L1 side of the lab: runs L2 guests and measures their exits from inside the
hypervisor guest. It depends only on the standard library, qemu.qmp and hil.lab.qemu,
so the same code runs in L1 and on a bare-metal lab host."""
