"""Debian kernel sources for kvm builds: the source package at exactly the version of the
image the modules must load into, reduced to the parts a kvm module build reads, cached by
that version."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from hil.lab.assets import debian
from hil.lab.assets.cache import cache_root, cached_dir
from hil.lab.errors import LabError

# What an out-of-tree build of kvm.ko/kvm-amd.ko/kvm-intel.ko reads from the source tree
# (the rest comes from the headers package, so a modules series may not patch headers
# outside arch/x86/kvm and virt/kvm: build.py refuses it).
WANTED = ("arch/x86/kvm/", "virt/kvm/", "arch/x86/include/asm/kvm", "include/linux/kvm",
          "include/uapi/linux/kvm.h", "include/trace/events/kvm.h")
RECIPE = 2
# tarfile's extraction filters exist from Python 3.11.4 on; Debian 12 ships 3.11.2, so the
# checks in _extract_member are what keeps a hostile tarball inside the tree there.
SAFE_EXTRACT = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}

# package -> the text `apt-cache show PACKAGE` prints ("" when apt does not know it)
AptShow = Callable[[str], str]


def apt_cache_show(package: str) -> str:
    """Memoised until apt's package cache changes: each call costs about a second, and every
    run of a patched L1 asks for three packages."""
    stamp = debian.apt_lists_stamp()
    memo = cache_root() / "apt-show.json"
    known: dict[str, str] = {}
    if stamp and memo.exists():
        try:
            data = json.loads(memo.read_text())
            known = data["show"] if data.get("stamp") == stamp else {}
        except (ValueError, KeyError, TypeError):
            known = {}                 # a torn or foreign file: ask apt again
    if package in known:
        return known[package]
    proc = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True)
    text = proc.stdout if proc.returncode == 0 else ""
    if stamp and text:
        known[package] = text
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"stamp": stamp, "show": known}))
        tmp.replace(memo)
    return text


def apt_versions(package: str, show: AptShow = apt_cache_show) -> list[str]:
    """The versions apt knows of a package, newest first (apt-cache show's order), no repeats."""
    seen: list[str] = []
    for line in show(package).splitlines():
        if line.startswith("Version:"):
            v = line.split(":", 1)[1].strip()
            if v and v not in seen:
                seen.append(v)
    return seen


def pinned_version(source_package: str, image_package: str, headers_package: str | None = None,
                   show: AptShow = apt_cache_show, image_version: str | None = None) -> str:
    """The version of the image package, which the source (and headers) must have too: the
    module's code, the headers' struct layouts and the kernel it loads into are one upload.
    Refused, naming the newest the archive has, when the source is not at that version.
    image_package must be an exact ABI package (a series base's line is resolved first)."""
    image = apt_versions(image_package, show)
    if not image:
        raise LabError(f"Debian package {image_package!r} is not known to apt (run 'apt-get update'?)")
    want = image_version or image[0]     # the upload the L1 image was resolved to, else the newest
    if want not in image:
        raise LabError(f"{image_package}={want} is not in the archive (newest available: {image[0]})")
    for package in filter(None, (source_package, headers_package)):
        have = apt_versions(package, show)
        if want not in have:
            newest = have[0] if have else "none: apt does not know the package"
            raise LabError(f"{package}={want} (the version of {image_package}) is not in the archive "
                           f"(newest available: {newest}); the modules would not match the kernel "
                           f"they load into")
    return want


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def _extract_member(src: tarfile.TarFile, member: tarfile.TarInfo, rel: str, tree: Path, what: str) -> bool:
    """Extract one member as `rel` under tree, or refuse it: links are never created (a
    symlink or hard link is skipped, one pointing out of the tree is an error), and a member
    whose real path would leave the tree is an error. False: skipped."""
    if member.issym() or member.islnk():
        base = tree if member.islnk() else (tree / rel).parent
        target = Path(os.path.realpath(base / member.linkname))
        if os.path.isabs(member.linkname) or not _inside(Path(os.path.realpath(tree)), target):
            raise LabError(f"{what}: a link out of the tree: {member.name} -> {member.linkname}")
        return False
    if not (member.isfile() or member.isdir()):
        return False                   # devices, fifos: nothing a kernel build reads
    if os.path.isabs(rel) or ".." in rel.split("/"):
        raise LabError(f"{what}: unsafe path in the tarball: {member.name}")
    root = Path(os.path.realpath(tree))
    dest = Path(os.path.realpath(tree / rel))        # follows any link already on disk
    if not _inside(root, dest):
        raise LabError(f"{what}: {member.name} would be written outside {tree} (at {dest})")
    member.name = rel
    src.extract(member, tree, **SAFE_EXTRACT)
    return True


def extract_tree(tarball: Path, tree: Path, keep: Callable[[str], str | None], what: str) -> list[str]:
    """Extract the members `keep` maps to a relative path (None: left out); the links that
    were skipped are returned (the source tarball's are in-tree dts and selftest links)."""
    skipped: list[str] = []
    tree.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, mode="r|*") as src:
        for member in src:
            rel = keep(member.name)
            if rel is None or rel == "":
                continue
            if not _extract_member(src, member, rel, tree, what) and (member.issym() or member.islnk()):
                skipped.append(rel)
    return skipped


def _wanted(name: str, full: bool) -> str | None:
    rel = name.split("/", 1)[1] if "/" in name else ""
    return rel if full or any(rel.startswith(w) for w in WANTED) else None


def source_tree(package: str, version: str, full: bool = False) -> Path:
    """The tree of linux-source-X.Y at `version`, reduced to what a kvm module build reads
    unless `full` (a whole-kernel build)."""

    def build(out: Path) -> None:
        deb = debian.download(package, version, out / "deb")
        inner = out / "linux-source.tar.xz"
        # dpkg-deb streams the package's data tar; only the source tarball's bytes are read
        # from it (no member is extracted by name).
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
            for member in outer:
                if member.isfile() and member.name.endswith(".tar.xz") and "/usr/src/" in "/" + member.name.lstrip("./"):
                    f = outer.extractfile(member)
                    assert f is not None
                    with open(inner, "wb") as dst:
                        shutil.copyfileobj(f, dst, 1 << 20)
        if proc.wait() != 0 or not inner.exists():
            raise LabError(f"{deb.name}: no source tarball under /usr/src")
        skipped = extract_tree(inner, out / "tree", lambda name: _wanted(name, full), f"{package}={version}")
        (out / "links-skipped.txt").write_text("".join(s + "\n" for s in skipped))
        inner.unlink()
        shutil.rmtree(out / "deb")

    path, _ = cached_dir("kernel-source", {"package": package, "version": version,
                                           "wanted": "everything" if full else WANTED, "recipe": RECIPE}, build)
    return path / "tree"
