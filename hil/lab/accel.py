"""Choosing the accelerator for L1 by a real boot, not by the presence of /dev/kvm.

On some hosts /dev/kvm answers ioctls yet cannot run Linux (a paravirtual KVM): the only
honest test is to boot the L1 image under KVM and wait for its agent. The answer is
cached per (host kernel, CPU, QEMU, image) so the probe runs once per host setup.
"""
from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass

from hil.lab.assets.cache import cache_root, digest
from hil.lab.qemu.host import host_cpu_model, qemu_version


@dataclass(frozen=True)
class AccelChoice:
    accel: str          # "kvm" | "tcg"
    reason: str
    probed: bool        # a boot probe ran now (not from cache)


def kvm_device_usable() -> tuple[bool, str]:
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not readable and writable by this user"
    return True, "/dev/kvm present"


def choose_accel(requested: str, kernel_key: str, boot_probe: Callable[[], tuple[bool, str]]) -> AccelChoice:
    """requested: auto|kvm|tcg. boot_probe boots L1 under KVM and says whether its agent,
    with VMX/SVM visible, came up."""
    if requested == "tcg":
        return AccelChoice("tcg", "requested", False)
    usable, why = kvm_device_usable()
    if not usable:
        if requested == "kvm":
            return AccelChoice("kvm", f"requested, but {why}", False)
        return AccelChoice("tcg", why, False)
    if requested == "kvm":
        return AccelChoice("kvm", "requested", False)
    key = digest({"host": platform.release(), "cpu": host_cpu_model(), "qemu": qemu_version(), "kernel": kernel_key})
    path = cache_root() / "accel-probe" / f"{key}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        return AccelChoice(cached["accel"], cached["reason"] + " (cached boot probe)", False)
    ok, detail = boot_probe()
    choice = AccelChoice("kvm" if ok else "tcg",
                         f"KVM boot probe: {detail}" if ok else f"KVM cannot boot L1 here ({detail}); using TCG with SVM emulation",
                         True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(choice)))
    return choice
