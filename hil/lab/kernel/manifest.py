"""kernel_patches/<series>/series.yaml: what a series is, validated with file, line and key."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hil.lab.assets import kernel_line
from hil.lab.errors import LabError
from hil.scenario.errors import ConfigError
from hil.scenario.schema import Field, validate_map
from hil.scenario.yamlsrc import load_yaml

PATCH_FIELDS = {
    "subject": Field("str", required=True),
    "file": Field("str", required=True),
    "lore": Field("str", nullable=True, doc="message id or URL, where known"),
    "touches": Field("list", default=list, items=Field("str")),
}
BASE_FIELDS = {
    "name": Field("str", nullable=True, doc="what --base calls it, e.g. 6.12 (default: the kernel version)"),
    "kind": Field("enum", required=True, choices=("debian", "upstream")),
    "source_package": Field("str", nullable=True, doc="debian: e.g. linux-source-6.1"),
    "headers_package": Field("str", nullable=True, doc="debian: an exact linux-headers package (default: the "
                                                     "one of the resolved image, same ABI and version)"),
    "image_package": Field("str", nullable=True, doc="debian: the kernel line the modules load into, e.g. "
                                                   "linux-image-6.1 (resolved to the newest ABI at build time), "
                                                   "or an exact ABI package"),
    "version": Field("str", nullable=True, doc="upstream: e.g. v3.6-rc4"),
    "patches_dir": Field("str", nullable=True, doc="folder of the series holding the patches rebased onto "
                                                 "this base (same file names); default: the series folder"),
}
SERIES_FIELDS = {
    "name": Field("str", required=True),
    "description": Field("str", default=""),
    "base": Field("map", required=True, fields=BASE_FIELDS),
    "other_bases": Field("list", default=list, items=Field("map", fields=BASE_FIELDS),
                         doc="more kernels the same patches are rebased onto (hil kernel build --base NAME)"),
    "build": Field("enum", default="modules-out-of-tree", choices=("modules-out-of-tree", "full-kernel")),
    "config_fragment": Field("list", default=list, items=Field("str")),
    "architectures": Field("list", default=lambda: ["svm", "vmx"], items=Field("enum", choices=("svm", "vmx"))),
    "toolchain": Field("str", default="the distribution's gcc"),
    "profile": Field("str", required=True, doc="the hil.model profile the series implements"),
    "ship_patches": Field("bool", default=True),
    "patches": Field("list", default=list, items=Field("map", fields=PATCH_FIELDS)),
}


@dataclass(frozen=True)
class Patch:
    subject: str
    file: str
    lore: str | None
    touches: tuple[str, ...]


@dataclass(frozen=True)
class Series:
    name: str
    folder: Path
    description: str
    base: dict[str, str | None]
    build: str
    config_fragment: tuple[str, ...]
    architectures: tuple[str, ...]
    toolchain: str
    profile: str
    ship_patches: bool
    patches: tuple[Patch, ...]
    bases: tuple[dict[str, str | None], ...] = ()     # every base, the default first

    def patch_paths(self) -> list[Path]:
        return [self.patch_dir / p.file for p in self.patches]

    @property
    def patch_dir(self) -> Path:
        return self.folder / (self.base.get("patches_dir") or ".")

    def on_base(self, name: str | None) -> "Series":
        """The series on the named base (None: the default)."""
        if name is None:
            return self
        for base in self.bases:
            if base["name"] == name:
                return replace(self, base=base)
        raise LabError(f"series {self.name} has no base {name!r} (bases: {', '.join(str(b['name']) for b in self.bases)})")

    def base_for_image(self, package: str) -> "Series":
        """The series on the base whose modules load into this (resolved) linux-image package:
        the base names that package or its line (linux-image-6.1 for linux-image-6.1.0-57-amd64)."""
        for base in self.bases:
            image = str(base.get("image_package"))
            if image == package or (kernel_line.is_line(image) and
                                    kernel_line.line_of(package) == kernel_line.line_of(image)):
                return replace(self, base=base)
        images = ", ".join(str(b.get("image_package")) for b in self.bases)
        raise LabError(f"series {self.name} is built for {images}; the topology's L1 kernel is {package}: "
                       f"set l1.kernel to one of those (debian:<package or line>)")

    def for_kernel(self, package: str, version: str) -> "Series":
        """This base pinned to one resolved image upload: source, headers and image agree."""
        headers = self.base.get("headers_package")
        if not headers or kernel_line.is_line(str(self.base.get("image_package"))):
            headers = "linux-headers-" + package.removeprefix("linux-image-")
        return replace(self, base={**self.base, "image_package": package, "headers_package": headers,
                                   "image_version": version})


def load_series(name_or_dir: str | Path, root: Path, valid_profiles: list[str] | None = None) -> Series:
    folder = Path(name_or_dir) if Path(name_or_dir).is_dir() else root / "kernel_patches" / str(name_or_dir)
    path = folder / "series.yaml"
    if not path.exists():
        known = sorted(p.parent.name for p in (root / "kernel_patches").glob("*/series.yaml"))
        raise ConfigError(str(path), None, "", f"no such series (known: {', '.join(known) or 'none'})")
    src = load_yaml(path, str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
    if not isinstance(src.data, dict):
        raise src.error("", "expected a mapping")
    v = validate_map(src.data, SERIES_FIELDS, "", src)
    bases = [v["base"], *v["other_bases"]]
    names: set[str] = set()
    for i, base in enumerate(bases):
        key = "base" if i == 0 else f"other_bases[{i - 1}]"
        needs = ("source_package", "image_package") if base["kind"] == "debian" else ("version",)
        for need in needs:
            if not base[need]:
                raise src.error(key, f"missing required key {need!r} for a {base['kind']} base")
        base["name"] = base["name"] or _base_name(base)
        if base["name"] in names:
            raise src.error(f"{key}.name", f"base {base['name']!r} listed twice")
        names.add(base["name"])
        pdir = folder / (base["patches_dir"] or ".")
        if base["patches_dir"] and not pdir.is_dir():
            raise src.error(f"{key}.patches_dir", f"no folder {base['patches_dir']} in {folder.name}")
        if v["ship_patches"] and base["patches_dir"]:     # the series folder itself: checked per patch below
            for p in v["patches"]:
                if not (pdir / p["file"]).exists():
                    raise src.error(f"{key}.patches_dir", f"file not found: {base['patches_dir']}/{p['file']}")
    base = bases[0]
    if valid_profiles is not None and v["profile"] not in valid_profiles:
        raise src.error("profile", f"unknown profile {v['profile']!r}; valid: {', '.join(valid_profiles)}")
    seen: set[str] = set()
    for i, p in enumerate(v["patches"]):
        if p["file"] in seen:
            raise src.error(f"patches[{i}].file", f"patch {p['file']} listed twice")
        seen.add(p["file"])
        if v["ship_patches"] and not bases[0]["patches_dir"] and not (folder / p["file"]).exists():
            raise src.error(f"patches[{i}].file", f"file not found: {p['file']}")
    return Series(
        name=v["name"], folder=folder, description=v["description"], base=base, build=v["build"],
        config_fragment=tuple(v["config_fragment"]), architectures=tuple(v["architectures"]),
        toolchain=v["toolchain"], profile=v["profile"], ship_patches=v["ship_patches"],
        patches=tuple(Patch(p["subject"], p["file"], p["lore"], tuple(p["touches"])) for p in v["patches"]),
        bases=tuple(bases),
    )


def _base_name(base: dict[str, str | None]) -> str:
    # linux-source-6.12 -> 6.12; an upstream base is its tag
    return (base.get("source_package") or "").removeprefix("linux-source-") or str(base.get("version"))
