"""Choosing the accelerator for L1 by a real boot, not by the presence of /dev/kvm.

On some hosts /dev/kvm answers ioctls yet cannot run Linux (a paravirtual KVM): the only
honest test is to boot the L1 image under KVM and wait for its agent. The answer is
cached per (host kernel, CPU, QEMU, image) so the probe runs once per host setup.

A probe that booted is cached for good. A failed probe may be transient (a busy host, a
timeout), so "KVM unusable" is cached only for a while: an hour after the first failure,
doubling with each consecutive failure up to a day, after which the probe runs again. A
probe that proved the failure (it may return a third element, True, e.g. when L1 booted
but showed no VMX/SVM) is cached for good. A memo that is missing, truncated or not what
hil writes is a miss; one that cannot be written costs only the next run a probe.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.lab.assets.cache import cache_root, digest, read_json_memo, write_json_atomic
from hil.lab.qemu.host import host_cpu_model
from hil.lab.l0 import qemu_version

RETRY_AFTER = 3600.0          # seconds a first failed probe is trusted
RETRY_AFTER_MAX = 86400.0


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


def choose_accel(requested: str, kernel_key: str, boot_probe: Callable[[], tuple[Any, ...]],
                 now: Callable[[], float] = time.time) -> AccelChoice:
    """requested: auto|kvm|tcg. boot_probe boots L1 under KVM and returns (ok, detail) or
    (ok, detail, proven): whether its agent, with VMX/SVM visible, came up."""
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
    memo = _valid_memo(read_json_memo(path))
    t = now()
    if memo is not None:
        until = memo.get("retry_after")
        if until is None:
            return AccelChoice(memo["accel"], memo["reason"] + " (cached boot probe)", False)
        if memo["probed_at"] - 60 <= t < until:      # a clock set back does not stretch the wait
            return AccelChoice(memo["accel"], memo["reason"] + f" (cached boot probe; probed again after "
                               f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(until))})", False)
    result = boot_probe()
    ok, detail, proven = bool(result[0]), str(result[1]), len(result) > 2 and bool(result[2])
    choice = AccelChoice("kvm" if ok else "tcg",
                         f"KVM boot probe: {detail}" if ok else f"KVM cannot boot L1 here ({detail}); using TCG with SVM emulation",
                         True)
    failures = 0 if ok else (memo or {}).get("failures", 0) + 1
    retry = None if ok or proven else t + min(RETRY_AFTER * 2 ** min(failures - 1, 16), RETRY_AFTER_MAX)
    _save(path, {"accel": choice.accel, "reason": choice.reason, "probed_at": t, "failures": failures,
                 "retry_after": retry})
    return choice


def _valid_memo(m: Any) -> dict[str, Any] | None:
    """The memo if it has exactly the shape hil writes (older or hand-edited files are misses)."""
    if not isinstance(m, dict) or m.get("accel") not in ("kvm", "tcg") or not isinstance(m.get("reason"), str):
        return None
    if "probed_at" not in m and m["accel"] == "kvm":     # written before retries existed: a success stands
        return {"accel": "kvm", "reason": m["reason"], "probed_at": 0, "failures": 0, "retry_after": None}
    num = (int, float)
    if not isinstance(m.get("probed_at"), num) or isinstance(m.get("failures"), bool) \
            or not isinstance(m.get("failures"), int) or m["failures"] < 0:
        return None
    if m.get("retry_after") is not None and not isinstance(m["retry_after"], num):
        return None
    return m


def _save(path: Path, memo: dict[str, Any]) -> None:
    try:
        write_json_atomic(path, memo)
    except OSError:
        pass     # a read-only or full cache: this run has its answer, the next one probes again
