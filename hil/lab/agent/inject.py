"""Make a running QEMU's vCPU thread issue one more ioctl on its vCPU fd, with ptrace.

QEMU in L1 knows nothing of a patched kernel's vCPU ioctls (a dedicated-CPU mode, in the
spirit of the 2012 KVM_SET_SLAVE_CPU); hil makes the vCPU thread itself call them, so the
ioctl runs in the right task, on the right fd, without changing QEMU. The thread is seized
and interrupted (no SIGSTOP: the other threads keep running), its KVM_RUN returns EINTR,
and at that stop the syscall instruction just executed is re-run with our arguments."""
from __future__ import annotations

import copy
import os
from pathlib import Path

from ptrace.binding import func as pt

from hil.lab.errors import LabError

PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
SYS_IOCTL = 16              # x86-64
SYSCALL_INSN = 0x050F       # 0f 05, little-endian
WALL = 0x40000000


def _kvm_io(nr: int) -> int:
    return (0xAE << 8) | nr  # _IO(KVMIO, nr)


KVM_NMI = _kvm_io(0x9A)


def vcpu_fd(pid: int, index: int) -> int:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == f"anon_inode:kvm-vcpu:{index}":
                return int(fd.name)
        except OSError:
            continue
    raise LabError(f"QEMU {pid} has no fd for vCPU {index} (is it running under KVM?)")


def _wait_stop(tid: int) -> None:
    _, status = os.waitpid(tid, WALL)
    if not os.WIFSTOPPED(status):
        raise LabError(f"vCPU thread {tid} did not stop under ptrace (status {status:#x})")


def _read16(tid: int, addr: int) -> int:
    # PTRACE_PEEKTEXT reads aligned words only: read the one or two words around addr.
    base = addr & ~7
    data = b"".join(pt.ptrace_peektext(tid, base + 8 * i).to_bytes(8, "little") for i in range(2))
    return int.from_bytes(data[addr - base:addr - base + 2], "little")


def inject_vcpu_ioctl(pid: int, tid: int, index: int, request: int, arg: int = 0) -> int:
    """Run ioctl(vcpu_fd, request, arg) in thread `tid` (vCPU `index`, from QMP query-cpus-fast)
    of QEMU `pid`; return the ioctl's result (negative errno on failure)."""
    fd = vcpu_fd(pid, index)
    pt.ptrace(PTRACE_SEIZE, tid, 0, 0)
    try:
        pt.ptrace(PTRACE_INTERRUPT, tid, 0, 0)
        _wait_stop(tid)
        saved = pt.ptrace_getregs(tid)
        if _read16(tid, saved.rip - 2) != SYSCALL_INSN:
            raise LabError(f"vCPU thread {tid} did not stop right after a syscall instruction")
        regs = copy.copy(saved)
        regs.rax, regs.orig_rax = SYS_IOCTL, -1 & 0xFFFFFFFFFFFFFFFF
        regs.rdi, regs.rsi, regs.rdx = fd, request, arg
        regs.rip = saved.rip - 2
        pt.ptrace_setregs(tid, regs)
        pt.ptrace_singlestep(tid)
        _wait_stop(tid)
        result = pt.ptrace_getregs(tid).rax
        pt.ptrace_setregs(tid, saved)      # back into QEMU's loop as if KVM_RUN had said EINTR
        return result - (1 << 64) if result >= 1 << 63 else result
    finally:
        pt.ptrace_detach(tid, 0)
