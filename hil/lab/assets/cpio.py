"""A newc cpio writer: the initramfs is built without root, mounts or the cpio tool."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


def _header(f: BinaryIO, name: str, mode: int, size: int, nlink: int, mtime: int, ino: int) -> None:
    fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name) + 1, 0]
    f.write(b"070701" + b"".join(b"%08X" % v for v in fields))
    f.write(name.encode() + b"\0")
    _pad(f)


def _pad(f: BinaryIO) -> None:
    f.write(b"\0" * (-f.tell() % 4))


def write_cpio(root: Path, out: Path) -> None:
    """Archive every entry under root (files, dirs, symlinks) owned by root:root."""
    entries = sorted(root.rglob("*"), key=lambda p: str(p.relative_to(root)))
    with open(out, "wb") as f:
        for ino, path in enumerate(entries, start=1):
            st = path.lstat()
            name = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path).encode()
                _header(f, name, st.st_mode, len(target), 1, int(st.st_mtime), ino)
                f.write(target)
            elif stat.S_ISDIR(st.st_mode):
                _header(f, name, st.st_mode, 0, 2, int(st.st_mtime), ino)
            else:
                _header(f, name, st.st_mode, st.st_size, 1, int(st.st_mtime), ino)
                with open(path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
            _pad(f)
        _header(f, "TRAILER!!!", 0, 0, 1, 0, 0)
        _pad(f)
