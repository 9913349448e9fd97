"""Kernel series: manifests, import of a user's copy, out-of-tree kvm module builds.

The names below are loaded on first use: a run that asks for no series imports
hil.lab.kernel.abi only, not the build machinery (~20 ms: build.py hashes its own code)."""
from __future__ import annotations

import importlib
from typing import Any

_FROM = {"PatchConflict": "build", "SeriesBuild": "build", "apply_patches": "build", "build": "build",
         "build_series": "build", "Patch": "manifest", "Series": "manifest", "load_series": "manifest"}
__all__ = sorted(_FROM)


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
