"""hil kernel import: a user's copy of a series (an mbox or a folder of .patch files),
checked against the manifest by subject and order, then stored in the cache."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import mailbox
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hil.lab.assets.cache import cache_root
from hil.lab.errors import LabError
from hil.lab.kernel.manifest import Series

_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")
# A series name or patch file name becomes one path component under the cache: no '/', no
# '..', no leading '.' (the cache's own temporary and tombstone entries start with one).
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+,=@-]{0,199}")
MARKER = "source"                 # the file in an imported copy naming where it came from
STALE_SECONDS = 3600              # a temporary import dir this old belongs to no live import
MAX_IMPORT_BYTES = 32 << 20       # an mbox, or a folder's patches together (a 21-patch series is <1 MiB)


def component(what: str, name: str) -> str:
    """`name` if it is a single, plain path component; else a LabError saying why."""
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        raise LabError(f"{what} {name!r} is not a plain file name: use letters, digits and . _ + , = @ - "
                       "(no '/', no leading '.', at most 200 characters)")
    return name


def _kind(mode: int) -> str:
    return ("a symlink" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a directory" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def read_regular(path: Path, limit: int, follow: bool) -> bytes:
    """A regular file's bytes (at most `limit`), without blocking on a FIFO or device and,
    unless `follow`, without following a symlink."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:    # O_NOFOLLOW met a symlink
            raise LabError(f"{path}: is a symlink; hil imports only regular .patch files") from e
        raise LabError(f"{path}: cannot read: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LabError(f"{path}: is {_kind(st.st_mode)}; hil imports only regular files")
        if st.st_size > limit:
            raise LabError(f"{path}: {st.st_size} bytes, over the {limit >> 20} MiB an import may hold")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LabError(f"{path}: over the {limit >> 20} MiB an import may hold")
    return data


def normalise_subject(subject: str) -> str:
    """'[RFC v2 PATCH 14/21] KVM: Directly  handle…' -> 'kvm: directly handle…'."""
    s = " ".join(subject.split())
    while _TAG.match(s):
        s = _TAG.sub("", s, count=1)
    return s.strip().casefold()


@dataclass(frozen=True)
class FoundPatch:
    subject: str
    text: str
    origin: str


def _is_patch(text: str) -> bool:
    return "\n+++ " in text and "\n--- " in text


def read_mbox(path: Path) -> list[FoundPatch]:
    read_regular(path, MAX_IMPORT_BYTES, follow=True)      # refuses a FIFO, device or huge file first
    out = []
    for i, msg in enumerate(mailbox.mbox(str(path), create=False)):
        body = msg.get_payload(decode=True)
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(msg.get_payload())
        if _is_patch(text):   # skips cover letters and replies
            out.append(FoundPatch(str(msg.get("Subject", "")), text, f"{path.name} message {i + 1}"))
    return out


def read_dir(path: Path) -> list[FoundPatch]:
    """Every *.patch in the folder; a symlink, FIFO or other non-regular *.patch is refused
    (never followed or opened for reading, so nothing blocks)."""
    out = []
    budget = MAX_IMPORT_BYTES
    for f in sorted(path.glob("*.patch")):
        data = read_regular(f, budget, follow=False)
        budget -= len(data)
        text = data.decode(errors="replace")
        m = re.search(r"^Subject:\s*(.*(?:\n[ \t].*)*)", text, re.M)
        subject = m.group(1) if m else text.splitlines()[0] if text else f.stem
        if _is_patch(text):
            out.append(FoundPatch(subject, text, f.name))
    return out


def check_against(series: Series, found: list[FoundPatch]) -> list[str]:
    """Every way the copy differs from the manifest, in words; empty when it matches."""
    expected = [normalise_subject(p.subject) for p in series.patches]
    got = [normalise_subject(f.subject) for f in found]
    problems = []
    for i, s in enumerate(expected):
        if s not in got:
            problems.append(f"missing patch {i + 1}/{len(expected)}: {series.patches[i].subject!r}")
    for f, s in zip(found, got):
        if s not in expected:
            problems.append(f"unknown patch {f.subject!r} ({f.origin})")
    present = [s for s in got if s in expected]
    order = [s for s in expected if s in got]
    if not problems and present != order:
        for pos, s in enumerate(present):
            want = expected.index(s)
            if order[pos] != s:
                problems.append(f"out of order: {found[got.index(s)].subject!r} found at position {pos + 1}, "
                                f"the manifest has it at {want + 1}")
                break
    return problems


def import_series(series: Series, source: Path) -> Path:
    """Check the copy against the manifest, then store it under the cache as
    series/<name>/<digest>/, written beside and renamed into place (never half-written)."""
    name = component("series name", series.name)
    for p in series.patches:
        component(f"series {name}: patch file", p.file)
        if p.file == MARKER:
            raise LabError(f"series {name}: a patch may not be called {MARKER!r} (hil's own record of the import)")
    if source.is_dir():
        found = read_dir(source)
    elif source.exists():
        found = read_mbox(source)
    else:
        raise LabError(f"{source}: no such mbox or directory")
    if not found:
        raise LabError(f"{source}: no patches found")
    problems = check_against(series, found)
    if problems:
        raise LabError(f"{source} does not match kernel_patches/{series.name}/series.yaml:\n  " + "\n  ".join(problems))
    by_subject = {normalise_subject(f.subject): f for f in found}
    digest = hashlib.sha256("".join(by_subject[normalise_subject(p.subject)].text
                                    for p in series.patches).encode()).hexdigest()[:24]
    top = cache_root() / "series"
    dest = top / name / digest
    if not dest.resolve().is_relative_to(top.resolve()):     # belt and braces: the checks above make it so
        raise LabError(f"series {name}: {dest} is outside the cache {top}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(".*"):        # an import killed outright (SIGKILL) left it
        with contextlib.suppress(OSError):
            if stale.is_dir() and time.time() - stale.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=dest.parent))
    try:
        for p in series.patches:
            _write_synced(tmp / p.file, by_subject[normalise_subject(p.subject)].text)
        _write_synced(tmp / MARKER, str(source.resolve()) + "\n")     # last: it marks the copy complete
        if dest.exists():     # the same patches imported before: swap, so a reader never sees half
            old = dest.with_name(f".{digest}.old.{os.getpid()}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def imported_dir(series: Series) -> Path | None:
    """The newest imported copy of a series whose patches hil does not ship."""
    top = cache_root() / "series" / component("series name", series.name)
    copies = sorted((p for p in top.glob(f"*/{MARKER}") if not p.parent.name.startswith(".")),
                    key=lambda p: p.stat().st_mtime)
    return copies[-1].parent if copies else None
