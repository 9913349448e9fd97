"""Debian kernel sources for out-of-tree KVM builds: the source package, reduced to the
parts a kvm module build reads, cached by the package's exact version."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from hil.lab.assets import debian
from hil.lab.assets.cache import cached_dir
from hil.lab.errors import LabError

# What an out-of-tree build of kvm.ko/kvm-amd.ko/kvm-intel.ko reads from the source tree
# (the rest comes from the headers package); the asm/linux kvm headers are kept for patches.
WANTED = ("arch/x86/kvm/", "virt/kvm/", "arch/x86/include/asm/kvm", "include/linux/kvm",
          "include/uapi/linux/kvm.h", "include/trace/events/kvm.h")
RECIPE = 1
# tarfile's extraction filters exist from Python 3.11.4 on; Debian 12 ships 3.11.2.
SAFE_EXTRACT = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _wanted(name: str, full: bool) -> str | None:
    rel = name.split("/", 1)[1] if "/" in name else ""
    return rel if full or any(rel.startswith(w) for w in WANTED) else None


def source_tree(package: str, full: bool = False) -> tuple[Path, str]:
    """(tree, version): the tree of a linux-source-X.Y package, reduced to what a kvm module
    build reads unless `full` (a whole-kernel build)."""
    version = debian.candidate_version(package)

    def build(out: Path) -> None:
        deb = debian.download(package, version, out / "deb")
        inner = out / "linux-source.tar.xz"
        # dpkg-deb streams the package's data tar; we keep only the source tarball in it.
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
            for member in outer:
                if member.name.endswith(".tar.xz") and "/usr/src/" in "/" + member.name.lstrip("./"):
                    f = outer.extractfile(member)
                    assert f is not None
                    with open(inner, "wb") as dst:
                        shutil.copyfileobj(f, dst, 1 << 20)
        if proc.wait() != 0 or not inner.exists():
            raise LabError(f"{deb.name}: no source tarball under /usr/src")
        tree = out / "tree"
        with tarfile.open(inner, mode="r|xz") as src:
            for member in src:
                rel = _wanted(member.name, full)
                if rel is None or not (member.isfile() or member.isdir() or (full and member.issym())):
                    continue
                if rel.startswith("/") or ".." in rel.split("/"):
                    raise LabError(f"{package}: unsafe path in the source tarball: {member.name}")
                if member.issym() and (member.linkname.startswith("/") or os.path.normpath(
                        os.path.join(os.path.dirname(rel), member.linkname)).startswith("..")):
                    raise LabError(f"{package}: a link out of the tree in the source tarball: {member.name}")
                member.name = rel
                src.extract(member, tree, **SAFE_EXTRACT)
        inner.unlink()
        shutil.rmtree(out / "deb")

    path, _ = cached_dir("kernel-source", {"package": package, "version": version,
                                           "wanted": "everything" if full else WANTED, "recipe": RECIPE}, build)
    return path / "tree", version
