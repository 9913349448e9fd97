"""Make a thread of a running QEMU issue one more ioctl, with ptrace.

QEMU in L1 knows nothing of a patched kernel's vCPU ioctls (a dedicated-CPU mode, in the
spirit of the 2012 KVM_SET_SLAVE_CPU); hil makes the vCPU thread itself call them, so the
ioctl runs in the right task, on the right fd, without changing QEMU. Kicks from QEMU's I/O
thread go the same way: its main thread issues KVM_SIGNAL_MSI (KVM refuses VM ioctls from
another process). The thread is seized and interrupted (no SIGSTOP: the other threads keep
running), its syscall (KVM_RUN, ppoll) returns EINTR or is to be restarted, and at that stop
the syscall instruction just executed is run once more with our arguments; then the thread's
registers go back as they were, so it carries on as after any interrupted syscall."""
from __future__ import annotations

import copy
import os
import signal
import struct
import time
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


PTRACE_EVENT_STOP = 128


def _wait_stop(tid: int, pending: list[int], *, event: bool) -> None:
    """Wait for the stop we asked for: the PTRACE_INTERRUPT stop (event) or the single step's
    SIGTRAP. A signal that arrives first (QEMU's SIG_IPI, SIGALRM...) is kept in `pending`, to
    be delivered when the thread is let go, and the wait goes on."""
    for _ in range(64):
        _, status = os.waitpid(tid, WALL)
        if not os.WIFSTOPPED(status):
            raise LabError(f"thread {tid} did not stop under ptrace (status {status:#x})")
        sig = os.WSTOPSIG(status)
        if event and status >> 16 == PTRACE_EVENT_STOP:
            return
        if not event and sig == signal.SIGTRAP and status >> 16 == 0:
            return
        if status >> 16 == 0:              # a signal-delivery stop: hold the signal, carry on
            pending.append(sig)
        # resume towards the stop we want: an interrupt is still due; a step is repeated
        if event:
            pt.ptrace_cont(tid, 0)
        else:
            pt.ptrace_singlestep(tid)
    raise LabError(f"thread {tid} never reached the ptrace stop hil asked for")


def _read16(tid: int, addr: int) -> int:
    # PTRACE_PEEKTEXT reads aligned words only: read the one or two words around addr.
    base = addr & ~7
    data = b"".join(pt.ptrace_peektext(tid, base + 8 * i).to_bytes(8, "little") for i in range(2))
    return int.from_bytes(data[addr - base:addr - base + 2], "little")


def _syscall_at_stop(tid: int, nr: int, args: tuple[int, ...], pending: list[int], memory: bytes = b"") -> int:
    """In a thread stopped by PTRACE_INTERRUPT right after a syscall instruction, run syscall
    `nr` once more with `args`; `memory` is copied below its stack (past the red zone) and an
    argument equal to MEMORY stands for its address. Registers and memory are put back."""
    saved = pt.ptrace_getregs(tid)
    if _read16(tid, saved.rip - 2) != SYSCALL_INSN:
        raise _NotAtSyscall(f"thread {tid} did not stop right after a syscall instruction")
    scratch = (saved.rsp - 512 - len(memory)) & ~15
    words = [(scratch + 8 * i) for i in range((len(memory) + 7) // 8)]
    old_words = [pt.ptrace_peektext(tid, a) for a in words]
    padded = memory.ljust(8 * len(words), b"\0")
    try:
        for i, a in enumerate(words):
            pt.ptrace_poketext(tid, a, int.from_bytes(padded[8 * i:8 * i + 8], "little"))
        regs = copy.copy(saved)
        regs.rax, regs.orig_rax = nr, -1 & 0xFFFFFFFFFFFFFFFF
        values = [scratch if a is MEMORY else a for a in args] + [0] * (3 - len(args))
        regs.rdi, regs.rsi, regs.rdx = values[:3]
        regs.rip = saved.rip - 2
        pt.ptrace_setregs(tid, regs)
        pt.ptrace_singlestep(tid)
        _wait_stop(tid, pending, event=False)
        after = pt.ptrace_getregs(tid)
        if after.rip != saved.rip:         # the step stopped elsewhere: the syscall did not run
            raise LabError(f"thread {tid}: injected syscall {nr} did not run (rip {after.rip:#x}, "
                           f"expected {saved.rip:#x})")
        result = after.rax
    finally:
        for a, w in zip(words, old_words):
            pt.ptrace_poketext(tid, a, w)
        pt.ptrace_setregs(tid, saved)      # back into its loop as if the syscall had said EINTR
    return result - (1 << 64) if result >= 1 << 63 else result


class _NotAtSyscall(LabError):
    pass


MEMORY = object()   # stands for the scratch copy of `memory` in an argument list


def _seized(tid: int, nr: int, args: tuple, memory: bytes = b"") -> int:
    pending: list[int] = []
    pt.ptrace(PTRACE_SEIZE, tid, 0, 0)
    try:
        pt.ptrace(PTRACE_INTERRUPT, tid, 0, 0)
        _wait_stop(tid, pending, event=True)
        return _syscall_at_stop(tid, nr, args, pending, memory)
    finally:
        # signals that arrived meanwhile are the thread's: delivered, never dropped
        pt.ptrace_detach(tid, pending[0] if pending else 0)
        for sig in pending[1:]:
            _tgkill(tid, sig)


def _tgkill(tid: int, sig: int) -> None:
    """Send a signal to one thread (os.kill would pick any thread of its process)."""
    import ctypes
    tgid = next(int(l.split()[1]) for l in Path(f"/proc/{tid}/status").read_text().splitlines()
                if l.startswith("Tgid:"))
    ctypes.CDLL(None, use_errno=True).syscall(234, tgid, tid, sig)   # SYS_tgkill on x86-64


def inject_vcpu_ioctl(pid: int, tid: int, index: int, request: int, arg: int = 0) -> int:
    """Run ioctl(vcpu_fd, request, arg) in thread `tid` (vCPU `index`, from QMP query-cpus-fast)
    of QEMU `pid`; return the ioctl's result (negative errno on failure)."""
    return _seized(tid, SYS_IOCTL, (vcpu_fd(pid, index), request, arg))


def vm_fd(pid: int) -> int:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == "anon_inode:kvm-vm":
                return int(fd.name)
        except OSError:
            continue
    raise LabError(f"QEMU {pid} has no KVM VM fd")


KVM_SIGNAL_MSI = (1 << 30) | (32 << 16) | (0xAE << 8) | 0xA5   # _IOW(KVMIO, 0xa5, struct kvm_msi)


def signal_msi(pid: int, address: int, data: int, attempts: int = 50) -> int:
    """An MSI from QEMU's I/O thread, as an emulated device raises one: KVM_SIGNAL_MSI issued by
    QEMU's main thread (pid == its tid) on the VM fd; KVM's kick of the target vCPU then comes
    from that thread's CPU. Returns the ioctl's result (> 0: delivered)."""
    msi = struct.pack("<IIIII12x", address & 0xFFFFFFFF, address >> 32, data, 0, 0)
    fd = vm_fd(pid)
    for _ in range(attempts):   # the main thread is between syscalls now and then: try again
        try:
            return _seized(pid, SYS_IOCTL, (fd, KVM_SIGNAL_MSI, MEMORY), msi)
        except _NotAtSyscall:
            time.sleep(0.001)
    raise LabError(f"QEMU {pid}'s main thread was never caught in a syscall to send an MSI")
