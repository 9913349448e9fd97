"""Where hil's own files are: the project root (HIL_ROOT overrides it), its configs, guest
sources and kernel series."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("HIL_ROOT", Path(__file__).resolve().parent.parent))
CONFIGS = ROOT / "qemu_configs"
GUEST = ROOT / "guest"
KERNEL_PATCHES = ROOT / "kernel_patches"
