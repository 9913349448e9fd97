"""Where hil's own files are: the project root (HIL_ROOT overrides it), its configs, guest
sources and kernel series."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("HIL_ROOT", Path(__file__).resolve().parent.parent))
CONFIGS = ROOT / "qemu_configs"
GUEST = ROOT / "guest"
KERNEL_PATCHES = ROOT / "kernel_patches"


def user_host_profile() -> Path:
    """This machine's host profile, as `hil calibrate` writes it by default and runs read it
    when the scenario names none: a user's config, not a cache (it is measured, not rebuilt)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hil" / "host-profile.yaml"
