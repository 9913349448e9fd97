"""A newc cpio writer: the initramfs is built without root, mounts or the cpio tool."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from hil.lab.errors import LabError

_U32 = 0xFFFFFFFF      # every newc header field is 8 hex digits


def _header(f: BinaryIO, name: bytes, mode: int, size: int, nlink: int, mtime: int, ino: int) -> None:
    mtime = min(max(mtime, 0), _U32)        # a file dated before 1970 or after 2106 still archives
    fields = [ino & _U32, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, len(name) + 1, 0]
    f.write(b"070701" + b"".join(b"%08X" % v for v in fields))
    f.write(name + b"\0")      # namesize counts bytes: a non-ASCII name is longer than its str
    _pad(f)


def _pad(f: BinaryIO) -> None:
    f.write(b"\0" * (-f.tell() % 4))


def write_cpio(root: Path, out: Path) -> None:
    """Archive every entry under root (files, dirs, symlinks) owned by root:root. Anything
    else (a FIFO, socket or device node, which would block or cannot be recreated without
    root) and files over 4 GiB are refused by name; a file that changes size while it is
    archived is an error, not a silently corrupt image."""
    entries = sorted(root.rglob("*"), key=lambda p: str(p.relative_to(root)))
    with open(out, "wb") as f:
        for ino, path in enumerate(entries, start=1):
            st = path.lstat()
            name = os.fsencode(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                target = os.fsencode(os.readlink(path))
                _header(f, name, st.st_mode, len(target), 1, int(st.st_mtime), ino)
                f.write(target)
            elif stat.S_ISDIR(st.st_mode):
                _header(f, name, st.st_mode, 0, 2, int(st.st_mtime), ino)
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > _U32:
                    raise LabError(f"initramfs: {path} is {st.st_size} bytes, over newc cpio's 4 GiB")
                _header(f, name, st.st_mode, st.st_size, 1, int(st.st_mtime), ino)
                _copy_exactly(path, f, st.st_size)
            else:
                raise LabError(f"initramfs: {path} is not a file, directory or symlink "
                               f"(mode {stat.filemode(st.st_mode)}); cannot archive it")
            _pad(f)
        _header(f, b"TRAILER!!!", 0, 0, 1, 0, 0)
        _pad(f)


def _copy_exactly(path: Path, f: BinaryIO, size: int) -> None:
    left = size
    with open(path, "rb") as src:
        while left and (chunk := src.read(min(left, 1 << 20))):
            f.write(chunk)
            left -= len(chunk)
        if left or src.read(1):
            raise LabError(f"initramfs: {path} changed size while it was archived")
