"""What the lab needs, checked one capability at a time, each with the fix for a miss."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace

from hil.lab.assets.cache import cache_root
from hil.lab.assets.kernel_line import resolve_cached
from hil.lab.assets.l1_image import PYTHON
from hil.lab.errors import LabError
from hil.lab.accel import kvm_device_usable
from hil.lab.qemu.host import qemu_version

SETUP_HINT = "run the README's set-up command (make setup)"
DEFAULT_KERNEL = "debian:linux-image-6.1"   # the default topology's L1 kernel line


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _which(name: str, package: str) -> Check:
    path = shutil.which(name)
    return Check(f"tool {name}", path is not None, path or "not found", f"apt-get install {package}")


def _caps() -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def checks() -> list[Check]:
    out: list[Check] = []
    ver = qemu_version()
    m = re.search(r"version (\d+)\.", ver)
    major = int(m.group(1)) if m else 0
    out.append(Check("qemu-system-x86_64", major > 0, ver,
                     "apt-get install -t bookworm-backports qemu-system-x86 (Debian 12) or qemu-system-x86"))
    out.append(Check("qemu >= 8 (QMP query-stats, x2APIC with vIOMMU)", major >= 8, ver,
                     "on Debian 12 take QEMU from bookworm-backports", required=False))
    usable, why = kvm_device_usable()
    out.append(Check("/dev/kvm (only used if a real boot under KVM works)", usable, why,
                     "none needed: hil falls back to TCG with SVM emulation", required=False))
    for tool, pkg in (("gcc", "gcc"), ("make", "make"), ("ld", "binutils"), ("strip", "binutils"),
                      ("modinfo", "kmod"), ("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("ldd", "libc-bin")):
        out.append(_which(tool, pkg))
    for tool, pkg in (("flex", "flex"), ("bison", "bison"), ("bc", "bc")):   # build: full-kernel series only
        out.append(replace(_which(tool, pkg), name=f"tool {tool} (whole-kernel series builds)", required=False))
    for path, pkg in (("/bin/busybox", "busybox-static"), (PYTHON, "python3")):
        out.append(Check(f"file {path} (copied into L1)", os.path.exists(path), path if os.path.exists(path) else "missing",
                         f"apt-get install {pkg}"))
    try:
        r = resolve_cached(DEFAULT_KERNEL)
        detail = f"{DEFAULT_KERNEL} -> {r.package} {r.version} known to apt"
        known = True
    except (LabError, OSError) as e:
        detail, known = str(e), False
    out.append(Check("Debian kernel package for L1 reachable", known, detail, "apt-get update"))
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free // (1 << 20)
        out.append(Check("image cache writable", os.access(root, os.W_OK), f"{root} ({free} MiB free)",
                         "set XDG_CACHE_HOME to a writable directory"))
    except OSError as e:
        out.append(Check("image cache writable", False, str(e), "set XDG_CACHE_HOME to a writable directory"))
    caps = _caps()
    out.append(Check("CAP_NET_ADMIN (taps, bridges, namespaces)", bool(caps & (1 << 12)), f"CapEff={caps:#x}",
                     "run as root", required=False))
    out.append(Check("CAP_SYS_PTRACE (tracing VMM threads)", bool(caps & (1 << 19)), f"CapEff={caps:#x}",
                     "run as root", required=False))
    out.append(Check("/dev/net/tun", os.path.exists("/dev/net/tun"), "present" if os.path.exists("/dev/net/tun") else "missing",
                     "modprobe tun", required=False))
    for mod in ("ptrace", "pyroute2", "qemu.qmp", "yaml"):
        try:
            __import__(mod)
            out.append(Check(f"python module {mod}", True, "importable"))
        except ImportError as e:
            out.append(Check(f"python module {mod}", False, str(e), SETUP_HINT))
    return out
