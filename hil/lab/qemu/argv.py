"""Command lines per level, built from validated config as argv lists (never shell strings)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hil.lab.qemu.host import QEMU_BINARY as L1_QEMU
from hil.scenario import L1Config, L2Config

QEMU_BINARY = "qemu-system-x86_64"
L1_CMDLINE = ("console=ttyS0", "loglevel=5", "panic=-1", "printk.devkmsg=on")


def l1_cpu(cpu: str, accel: str) -> str:
    # Under TCG only '-cpu max' emulates SVM; under KVM the host's VMX/SVM passes through.
    if cpu != "auto":
        return cpu
    return "host" if accel == "kvm" else "max"


def l1_argv(l1: L1Config, *, accel: str, kernel: Path, initrd: Path, console_log: Path,
            agent_socket: Path, binary: str = QEMU_BINARY, extra_append: Sequence[str] = (),
            machine_options: Sequence[str] = (), devices: Sequence[str] = ()) -> list[str]:
    """machine_options, devices: what L2's devices need of L0 (hil/lab/devices); the devices
    (a vIOMMU first) come before every other PCI device."""
    append = " ".join([*L1_CMDLINE, *extra_append, *([l1.append] if l1.append else [])])
    return [
        binary, "-nodefaults", "-no-reboot", "-display", "none",
        "-machine", ",".join([l1.machine, f"accel={accel}", *machine_options]),
        *devices,
        "-cpu", l1_cpu(l1.cpu, accel), "-smp", str(l1.smp), "-m", str(l1.memory),
        "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
        "-chardev", f"file,id=console,path={console_log}", "-serial", "chardev:console",
        # The agent channel is virtio-serial: a UART moves ~100 KB/s under TCG, too slow for payloads.
        "-device", "virtio-serial-pci,id=hilserial",
        "-chardev", f"socket,id=agent,path={agent_socket},server=on,wait=off",
        "-device", "virtserialport,bus=hilserial.0,chardev=agent,name=hil.agent",
        *l1.qemu_params,
    ]


@dataclass(frozen=True)
class L2Paths:
    """Where things live inside L1 (the agent's private /run/hil)."""
    kernel: str = "/run/hil/payload/kernel"
    initrd: str = "/run/hil/payload/initrd"
    serial_log: str = "/run/hil/l2-serial.log"
    binary: str = L1_QEMU           # the image's QEMU, inside L1


def l2_argv(l2: L2Config, *, append: str, paths: L2Paths = L2Paths(), initrd: bool = False) -> list[str]:
    argv = [
        paths.binary, "-nodefaults", "-no-reboot", "-display", "none",
        "-machine", l2.machine, "-accel", f"kvm,kernel-irqchip={l2.kernel_irqchip}",
        "-cpu", l2.cpu, "-smp", str(l2.smp), "-m", str(l2.memory),
        "-kernel", paths.kernel, "-append", append,
        "-chardev", f"file,id=console,path={paths.serial_log}", "-serial", "chardev:console",
    ]
    if initrd:
        argv += ["-initrd", paths.initrd]
    if l2.cpu_pm:
        argv += ["-overcommit", "cpu-pm=on"]
    return argv + list(l2.qemu_params)
