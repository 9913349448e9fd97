"""Shared by the kill, hang, concurrency and disk campaigns: a private lab (its own
XDG_CACHE_HOME, hard-linked from the warm shared cache, and its own TMPDIR), a hil process
watched for its stage lines and its process tree, and the leftover check."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from hil.lab import owner, procs
from hil.lab.assets.cache import cache_root

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "tests/integration/data/short-probe.yaml")
HIL = [sys.executable, "-m", "hil.cli"]
#: stage -> the text of hil's INFO line that starts it
STAGE_LINES = {"image": "L1 image:", "accel": "accelerator ", "restore": "restoring its snapshot",
               "boot": ": booting", "save": "saving an idle snapshot", "park": "with L2's QEMU parked",
               "l2": "L2: "}
#: shared cache kinds a private lab links (the big kernel sources only when asked)
LINKED_KINDS = ("kernel", "l1-image", "probe", "l1-snapshot", "accel-probe")


@dataclass
class Lab:
    root: Path
    #: TMPDIR: short, as QEMU's sockets live there and a unix socket path has 108 bytes at most
    tmp: Path = Path()

    def __post_init__(self) -> None:
        if self.tmp == Path():
            self.tmp = Path(tempfile.mkdtemp(prefix="hilt-", dir="/tmp"))
            weakref.finalize(self, shutil.rmtree, str(self.tmp), True)

    @property
    def cache(self) -> Path:
        return self.root / "xdg" / "hil"

    def env(self, **extra: str) -> dict[str, str]:
        return dict(os.environ, XDG_CACHE_HOME=str(self.root / "xdg"), TMPDIR=str(self.tmp),
                    PYTHONPATH=str(ROOT), HIL_ROOT=str(ROOT), **extra)


def private_lab(root: Path, kinds: tuple[str, ...] = LINKED_KINDS) -> Lab:
    """A lab whose cache is hard links to the shared cache's entries (entries are never
    written in place: they are built beside and renamed, so a link is as good as a copy)."""
    lab = Lab(root)
    lab.cache.mkdir(parents=True)
    shared = cache_root()
    for kind in kinds:
        if (shared / kind).is_dir():
            dst = lab.cache / kind
            dst.mkdir()
            for entry in (shared / kind).iterdir():
                if not entry.name.startswith("."):
                    subprocess.run(["cp", "-al", str(entry), str(dst / entry.name)], check=True)
    for memo in shared.glob("*.json"):
        shutil.copy2(memo, lab.cache / memo.name)
    return lab


def run_hil(lab: Lab | None, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = lab.env() if lab else dict(os.environ, PYTHONPATH=str(ROOT), HIL_ROOT=str(ROOT))
    return subprocess.run([*HIL, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# -- processes ---------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def tree(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st:
                children.setdefault(st[1], []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        start = owner.start_time(p)
        if start is not None:
            out.add((p, start))
            todo += children.get(p, [])
    return out


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        st = _stat(pid)
        if st is None or st[1] <= 1:
            return False
        pid = st[1]
    return False


def _family(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    f = text[text.rindex(")") + 2:].split()
    return f"state {f[0]} ppid {f[1]} pgrp {f[2]} sid {f[3]}"


def running(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z" and owner.start_time(pid) == start


class Hil:
    """A hil process, its output lines read as they come and its process tree sampled
    every 50 ms (so that the pids of short-lived build children are known after a kill)."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.t0 = time.monotonic()
        # PYTHONFAULTHANDLER: a hil that hangs is sent SIGABRT and prints every thread's stack
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=dict(env, PYTHONFAULTHANDLER="1"), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.tag = owner.tag(self.proc.pid)
        self.lines: list[str] = []
        self.seen: set[tuple[int, int]] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self.seen |= tree(self.proc.pid)
            time.sleep(0.05)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def wait_for(self, ready, timeout: float = 300) -> bool:
        """Until ready() is true (True) or hil exits first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            if self.proc.poll() is not None:
                return bool(ready())
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting; output:\n{self.output}")

    def descendant(self, name: str, marker: str = "") -> int | None:
        """A live descendant whose command's basename is `name` (and whose argv holds marker)."""
        for pid, _ in sorted(tree(self.proc.pid)):
            argv = cmdline(pid)
            if pid != self.proc.pid and argv and os.path.basename(argv.split()[0]) == name and marker in argv:
                return pid
        return None

    def finish(self, timeout: float = 180) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self._reader.join(10)
            raise AssertionError(f"hil did not end within {timeout} s; its output, then its threads' stacks:\n"
                                 f"{self.output}") from None
        self._reader.join(10)
        return rc


# -- leftovers ---------------------------------------------------------------------------
def leftovers(lab: Lab, known: set[tuple[int, int]], live: Hil | None = None,
              mounts: str | None = None, nets: list[str] | None = None) -> list[str]:
    """Everything a finished or killed hil left that the live one (if any) does not own."""
    problems = []
    live_tree = tree(live.proc.pid) if live else set()
    for pid, start in sorted(known - live_tree):
        if running(pid, start):
            problems.append(f"process {pid} still runs: {cmdline(pid)[:200]}")
    me = os.getpid()
    for d in Path("/proc").iterdir():
        # ancestry, not a snapshot of the live tree: make forks new jobs all the time
        if d.name.isdigit() and int(d.name) != me and not (live and _descends(int(d.name), live.proc.pid)):
            argv = cmdline(int(d.name))
            if (str(lab.root) in argv or str(lab.tmp) in argv) and (_stat(int(d.name)) or ("Z",))[0] != "Z":
                problems.append(f"process {d.name} uses the lab ({_family(int(d.name))}; live hil "
                                f"{live.proc.pid if live else None}): {cmdline(int(d.name))[:200]}")
    live_tag = live.tag if live else "none"
    records = f"hil-procs-{os.getuid()}"
    for p in lab.tmp.iterdir() if lab.tmp.is_dir() else ():
        if p.name == records:
            problems += [f"build record {r.name}" for r in p.iterdir() if not r.name.startswith(live_tag + "_")]
        elif live_tag not in p.name:
            inside = sorted(c.name for c in p.iterdir())[:8] if p.is_dir() else []
            problems.append(f"temp {p}" + (f" (holding {inside})" if inside else ""))
    tops = [lab.cache, *(d for d in lab.cache.iterdir() if d.is_dir())] if lab.cache.is_dir() else []
    for p in (p for top in tops for p in top.glob(".*")):
        if p.name.endswith(".lock") or live_tag in p.name or _building(p):
            continue
        problems.append(f"cache temp {p}")
    for p in lab.tmp.rglob("*") if lab.tmp.is_dir() else ():
        if p.is_socket() and live_tag not in str(p):
            problems.append(f"socket {p}")
    if mounts is not None and Path("/proc/mounts").read_text() != mounts:
        problems.append("mounts changed")
    if nets is not None and sorted(os.listdir("/sys/class/net")) != nets:
        problems.append(f"network interfaces changed: {sorted(os.listdir('/sys/class/net'))}")
    return problems


def _building(path: Path) -> bool:
    """A cache temp dir .<key>.<random> whose key lock is held: a live build's."""
    key = path.name[1:].split(".", 1)[0]
    lock = path.parent / f".{key}.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def wait_gone(known: set[tuple[int, int]], timeout: float = 10) -> None:
    """Processes killed a moment ago take a moment to be reaped."""
    deadline = time.monotonic() + timeout
    while any(running(p, s) for p, s in known) and time.monotonic() < deadline:
        time.sleep(0.05)


def tree_hash(path: Path) -> str:
    """Names and contents; an entry's inputs.json by its JSON (hil versions format it apart)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            if p.name == "inputs.json":
                h.update(json.dumps(json.loads(p.read_text()), sort_keys=True).encode())
                continue
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def entries_hash(cache: Path, kinds: tuple[str, ...] = ("kernel", "l1-image", "probe")) -> dict[str, str]:
    """kind/key -> hash of every file of every complete cache entry."""
    return {f"{k}/{e.name}": tree_hash(e) for k in kinds for e in sorted((cache / k).glob("*"))
            if (e / "inputs.json").exists()}


def records_dir_for(lab: Lab) -> Path:
    return lab.tmp / f"hil-procs-{os.getuid()}"


__all__ = ["Hil", "Lab", "ROOT", "SCENARIO", "STAGE_LINES", "entries_hash", "leftovers", "private_lab",
           "procs", "run_hil", "tree_hash", "wait_gone"]
