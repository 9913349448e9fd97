"""A content-addressed cache: an entry's directory name is the hash of every input that made it."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hil"


def digest(inputs: Any) -> str:
    """Stable hash of a JSON-able description of inputs."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path, patterns: tuple[str, ...] = ("**/*",)) -> str:
    """Hash of file names and contents under root (sorted, so order-independent)."""
    h = hashlib.sha256()
    files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file() and "__pycache__" not in p.parts})
    for p in files:
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()[:24]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached_dir(kind: str, inputs: Any, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return (directory, hit). On a miss, build into a temporary directory beside the
    final one and rename it into place, so a crash never leaves a half-built entry."""
    key = digest(inputs)
    final = cache_root() / kind / key
    with _locked(cache_root() / kind / f".{key}.lock"):
        if (final / "inputs.json").exists():
            return final, True
        for stale in final.parent.glob(f".{key}.*"):    # a build killed outright (SIGKILL) left it
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            build(tmp)
            (tmp / "inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, False


def prune(kind: str, keep: int) -> None:
    """Drop all but the `keep` most recently built entries of a kind (images are ~100 MB)."""
    entries = [p for p in (cache_root() / kind).glob("*") if (p / "inputs.json").exists()]
    for old in sorted(entries, key=lambda p: (p / "inputs.json").stat().st_mtime)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
