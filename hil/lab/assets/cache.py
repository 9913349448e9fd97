"""A content-addressed cache: an entry's directory name is the hash of every input that made it."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MEMO_MAX_BYTES = 1 << 20
# A file changed this close to (or after) the moment a stat memo was recorded may have changed
# again within the same timestamp tick (coarse-grained filesystems: 1 s, some 2 s): such a
# fingerprint is not trusted, the inputs are hashed again (git calls it "racily clean").
RACY_NS = 3_000_000_000


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
        marker = final / "inputs.json"
        if marker.exists():
            with contextlib.suppress(OSError):
                os.utime(marker)     # recently used: prune keeps it (it is about to be used)
            return final, True
        for stale in final.parent.glob(f".{key}.*"):    # a build killed outright (SIGKILL) left it
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            build(tmp)
            _write_synced(tmp / "inputs.json", json.dumps(inputs, indent=2, sort_keys=True))
            if final.exists():
                _entomb(final)
            tmp.rename(final)
            _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, False


def _entomb(entry: Path) -> None:
    """Remove an entry so that no moment shows it half-deleted: rename it out of sight in one
    step (a name starting with '.', which no lookup matches), then delete that."""
    tomb = entry.with_name(f".{entry.name}.dead.{os.getpid()}.{time.monotonic_ns()}")
    try:
        entry.rename(tomb)
    except FileNotFoundError:
        return
    shutil.rmtree(tomb, ignore_errors=True)


def prune(kind: str, keep: int) -> None:
    """Drop all but the `keep` most recently built or used entries of a kind (images are
    ~100 MB). An entry is renamed away before it is deleted, so a prune killed halfway never
    leaves an entry that looks complete but has lost files; tombstones a killed prune left
    behind are swept here."""
    top = cache_root() / kind
    for tomb in top.glob(".*.dead.*"):
        shutil.rmtree(tomb, ignore_errors=True)
    entries = []
    for p in top.glob("*"):
        with contextlib.suppress(OSError):
            entries.append(((p / "inputs.json").stat().st_mtime, p))
    for _, old in sorted(entries)[:-keep] if keep > 0 else sorted(entries):
        _entomb(old)


# -- stat memos: an input's hash reused while none of its files changed ------------------------
Fingerprint = list[list[Any]]
_now_ns = time.time_ns      # the recording moment (tests move it)


def watched_files(paths: Iterable[Path], trees: Iterable[tuple[Path, tuple[str, ...]]] = ()) -> list[Path]:
    """The paths, and for each tree its directories (an added or removed file changes its
    directory's mtime and ctime) and the files its patterns match, as tree_digest sees them."""
    out = list(paths)
    for root, patterns in trees:
        out.append(root)
        out.extend(sorted(d for d in root.rglob("*") if d.is_dir() and "__pycache__" not in d.parts))
        out.extend(sorted({p for pat in patterns for p in root.glob(pat)
                           if p.is_file() and "__pycache__" not in p.parts}))
    return out


def fingerprint(paths: Iterable[Path]) -> Fingerprint:
    """Per path: size, mtime, ctime, inode and device (None when missing). ctime cannot be set
    back by a program, and a file replaced by a rename has a new inode."""
    out: Fingerprint = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append([str(p), None])
            continue
        out.append([str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev])
    return out


def fingerprint_trusted(recorded: Any, now: Fingerprint, recorded_ns: Any) -> bool:
    """A memo recorded at recorded_ns with fingerprint `recorded` still describes the files
    `now` describes: same paths and stats, and none of them changed within RACY_NS of the
    recording (it could have changed again since, within the same timestamp tick)."""
    if not isinstance(recorded_ns, int) or recorded != now:
        return False
    return all(entry[1] is None or max(entry[2], entry[3]) < recorded_ns - RACY_NS for entry in now)


def stat_memo(name: str, key: Any, paths: Sequence[Path], compute: Callable[[], Any]) -> Any:
    """compute()'s JSON-able value, reused from a memo while `key` is the same and no file in
    `paths` changed (by stat: see fingerprint_trusted); computed again otherwise. `paths` must
    hold every file compute() reads. A memo that cannot be written is only a lost shortcut."""
    path = cache_root() / "stat-memo" / f"{name}-{digest(key)}.json"
    before = fingerprint(paths)
    memo = read_json_memo(path)
    if isinstance(memo, dict) and fingerprint_trusted(memo.get("fingerprint"), before, memo.get("recorded_ns")):
        return memo["value"]
    recorded_ns = _now_ns()
    value = compute()
    if fingerprint(paths) == before:      # nothing changed while it was computed
        with contextlib.suppress(OSError):
            write_json_atomic(path, {"fingerprint": before, "recorded_ns": recorded_ns, "value": value})
    return value


# -- small JSON memos (the accelerator choice, apt's candidate versions) ---------------------
def read_json_memo(path: Path) -> Any | None:
    """A memo's content, or None when it is missing, not a regular file, too large, truncated
    or otherwise not JSON: a memo is only a cache, so a bad one is a miss, never an error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, MEMO_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MEMO_MAX_BYTES:
        return None
    try:
        return json.loads(data)
    except ValueError:      # JSONDecodeError, or bytes that are not UTF-8
        return None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace `path` with obj as JSON so that every reader sees the old or the new file whole:
    written to a temporary file beside it, fsynced, renamed over it, the directory fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):    # a writer killed mid-way left it
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 600:
                stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
