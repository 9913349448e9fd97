"""What L0 code asks about this host's own QEMU, remembered across runs (not shipped into L1:
hil/lab/qemu/host.py is)."""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from hil.lab.assets.cache import stat_memo
from hil.lab.qemu import host


@functools.lru_cache(maxsize=None)
def qemu_version(binary: str = "qemu-system-x86_64") -> str:
    """host.qemu_version, remembered across runs while the binary's stat is unchanged: running
    QEMU to ask costs ~40 ms of every hil run (snapshot keys, the accelerator memo, provenance)."""
    path = shutil.which(binary)
    if path is None:
        return host.qemu_version(binary)
    return stat_memo("qemu-version", {"binary": path}, [Path(path), Path(os.path.realpath(path))],
                     lambda: host.qemu_version(binary))
