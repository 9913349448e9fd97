"""Kernel series: manifests, import of a user's copy, out-of-tree kvm module builds."""
from hil.lab.kernel.build import PatchConflict, SeriesBuild, apply_patches, build, build_series
from hil.lab.kernel.manifest import Patch, Series, load_series

__all__ = ["Patch", "PatchConflict", "Series", "SeriesBuild", "apply_patches", "build", "build_series", "load_series"]
