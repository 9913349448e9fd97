"""Facts about this host and its QEMU: the agent's and L0's shared source for them.
Standard library only: shipped into L1 with the agent."""
from __future__ import annotations

import functools
import platform
import re
import subprocess
from pathlib import Path

QEMU_BINARY = "/usr/bin/qemu-system-x86_64"
VERSION_FILE = Path("/etc/hil/qemu-version")   # written by the L1 image build: the same binary


@functools.lru_cache(maxsize=None)
def qemu_version(binary: str = "qemu-system-x86_64") -> str:
    """QEMU's first --version line; 'missing' when it cannot run."""
    # Starting QEMU just to ask its version costs ~0.5 s in a TCG-emulated L1.
    if binary == QEMU_BINARY and VERSION_FILE.exists():
        return VERSION_FILE.read_text().strip()
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return out.splitlines()[0] if out else "unknown"


def version_tuple(text: str) -> tuple[int, int] | None:
    """(major, minor) of a `QEMU emulator version X.Y.Z` line."""
    m = re.search(r"version (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def host_cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
