"""The start-up sweep: what a hil killed outright (SIGKILL, OOM, power) left behind is
removed by the next hil, before it builds or boots anything.

Only things whose owner is provably gone are touched, so concurrent runs are safe:
- private run dirs in $TMPDIR (hil-l1-<owner>-*, hil-l2-..., hil-accel-probe-...) and snapshot
  temp files (l1-snapshot/ and l1-parked/.<name>.<owner>) whose owner tag names a dead process;
- build process groups recorded by hil/lab/procs.py for a dead hil (make's compilers);
- cache build temp dirs (<kind>/.<key>.*) whose key lock nobody holds, and tombstones.
QEMU needs no sweep: PR_SET_PDEATHSIG kills it with its hil."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hil.lab import owner, procs
from hil.lab.assets.cache import cache_root

log = logging.getLogger(__name__)

#: run dirs made by hil/lab/qemu/machine.private_dir: hil-<what>-<pid>-<start>.<random> (an out
#: dir, hil-<scenario>-<random>, never matches: its random tail follows a '-', not a '.')
RUN_DIR_RE = re.compile(r"hil-[a-z0-9-]+?-(?P<owner>[0-9]+-[0-9]+)\.[a-z0-9_]+")
#: snapshot temp files: .<name>.state.<owner> (older hil: .<name>.state.<pid>), and their saved
#: info's: .<name>.state.info.<owner>
SNAPSHOT_TMP_RE = re.compile(r"\.(?P<name>.+\.state)(?:\.info)?\.(?P<owner>[0-9]+(?:-[0-9]+)?)")
#: cache entries being built (.<key>.<random>) or deleted (.<key>.dead.<pid>.<ns>)
CACHE_TMP_RE = re.compile(r"\.(?P<key>[0-9a-f]{24})\.(?P<rest>.+)")


@dataclass
class Swept:
    paths: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.paths or self.processes)


def _remove(path: Path, swept: Swept) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if not os.path.lexists(path):
        swept.paths.append(str(path))


def sweep_run_dirs(swept: Swept, tmp: Path | None = None) -> None:
    tmp = tmp or Path(tempfile.gettempdir())
    uid = os.getuid()
    for path in tmp.glob("hil-*"):
        m = RUN_DIR_RE.fullmatch(path.name)
        if m is None or owner.alive(m["owner"]):
            continue
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == uid:
                _remove(path, swept)


#: where L1 snapshots are saved: idle ones, and those with an L2 QEMU parked (hil/lab/run.py)
SNAPSHOT_DIRS = ("l1-snapshot", "l1-parked")


def sweep_snapshot_temps(swept: Swept, root: Path) -> None:
    for path in (p for d in SNAPSHOT_DIRS for p in (root / d).glob(".*")):
        m = SNAPSHOT_TMP_RE.fullmatch(path.name)
        if m is not None and not owner.alive(m["owner"]):
            _remove(path, swept)


def sweep_build_groups(swept: Swept) -> None:
    try:
        records = list(procs.records_dir().iterdir())
    except OSError:
        return
    for record in records:
        hil, _, leader = record.name.partition("_")
        if owner.alive(hil):
            continue
        m = owner.TAG_RE.fullmatch(leader)
        if m is not None:
            pgid = int(m["pid"])
            # pid reuse: a live process with the leader's pid but another start time is not ours
            reused = owner.start_time(pgid) not in (None, int(m["start"]))
            members = [] if reused else procs.group_members(pgid)
            if members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                swept.processes += members
        record.unlink(missing_ok=True)


def sweep_cache_temps(swept: Swept, root: Path) -> None:
    """A build temp dir is stale when its key's lock is free: the builder holds the lock for
    the whole build, and the kernel drops it when the builder dies however it died."""
    if not root.is_dir():
        return
    for kind in root.iterdir():
        if not kind.is_dir() or kind.name.startswith("."):
            continue
        by_key: dict[str, list[Path]] = {}
        for path in kind.glob(".*"):
            m = CACHE_TMP_RE.fullmatch(path.name)
            if m is not None and m["rest"] != "lock" and path.is_dir():
                by_key.setdefault(m["key"], []).append(path)
        for key, paths in by_key.items():
            with open(kind / f".{key}.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue          # a build of this key is running
                for path in paths:
                    _remove(path, swept)


def sweep(root: Path | None = None) -> Swept:
    """Remove what dead hil processes left; never raises (a sweep that fails leaves litter,
    not a broken run)."""
    swept = Swept()
    root = root or cache_root()
    for step in (lambda: sweep_build_groups(swept), lambda: sweep_run_dirs(swept),
                 lambda: sweep_snapshot_temps(swept, root), lambda: sweep_cache_temps(swept, root)):
        try:
            step()
        except OSError as e:
            log.warning("start-up sweep: %s", e)
    if swept:
        log.info("start-up sweep: removed %d leftover(s) of killed hil runs%s", len(swept.paths),
                 f", killed {len(swept.processes)} orphan build process(es)" if swept.processes else "")
        log.debug("swept %s", swept)
    return swept
