"""Build commands (make, compileall, patch) that never outlive hil.

Each runs in its own session (a process group of its own, out of reach of the terminal's
Ctrl-C, which hil handles) with PR_SET_PDEATHSIG on its leader. When hil stops it (a
timeout, an exception, SIGTERM turned into KeyboardInterrupt) the whole group is killed,
not just the leader: `make -j` otherwise leaves its compilers running. When hil itself is
SIGKILLed, PDEATHSIG kills the leader and a record file names the group, so the next hil's
start-up sweep (hil/lab/sweep.py) kills whatever is left of it."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from hil.lab import owner
from hil.lab.qemu.machine import private_dir

_PR_SET_PDEATHSIG = 1
GRACE_S = 5.0


def records_dir() -> Path:
    """Per-user directory of group records, '<owner tag>_<pgid>-<leader start>'."""
    path = Path(tempfile.gettempdir()) / f"hil-procs-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{path} is not a private directory of this user: refusing to use it")
    return path


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in session/group `pgid` (one started here:
    sid == pgid)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid and int(fields[3]) == pgid:   # state, pgrp, session
            pids.append(int(d.name))
    return pids


def kill_group(pgid: int, grace: float = GRACE_S) -> None:
    """SIGTERM the group (make then stops its jobs and removes half-written targets), then
    SIGKILL whatever is still there after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_members(pgid):
            time.sleep(0.05)


def _watcher(argv: list[str]) -> Any:
    """make's progress (hil/lab/progress.py) for every make hil runs: a kernel build takes minutes."""
    if Path(argv[0]).name != "make":
        return None
    from hil.lab import progress
    from hil.lab.assets.cache import cache_root
    return progress.MakeSteps(argv, cache_root() / "progress" / "make-steps.json")


def _pump(stream: Any, chunks: list[str], watcher: Any) -> None:
    """Read a pipe to its end, line by line as they come: each line to the watcher."""
    for line in iter(stream.readline, ""):
        chunks.append(line)
        if watcher is not None:
            try:
                watcher.line(line.rstrip("\n"))
            except Exception:     # a progress bar must never break a build
                watcher = None


def run(argv: list[str], *, timeout: float, check: bool = False, capture_output: bool = False,
        text: bool = False, stdout: Any = None, stderr: Any = None, env: dict[str, str] | None = None,
        cwd: str | Path | None = None, watcher: Any = None) -> subprocess.CompletedProcess:
    """subprocess.run's contract (TimeoutExpired, CalledProcessError) for a command whose whole
    process group goes when it ends or when hil stops it. A text stdout pipe is read as it comes
    when there is a watcher (`.line(text)`, `.close(ok)`): make's progress by default."""
    if capture_output:
        stdout = stderr = subprocess.PIPE
    if watcher is None and text and stdout == subprocess.PIPE:
        watcher = _watcher(argv)
    if watcher is not None and (not text or stdout != subprocess.PIPE):
        watcher = None
    # its own TMPDIR: what a compiler killed outright leaves there (cc*.s) goes with it
    tmp = private_dir("hil-build-")
    env = dict(os.environ if env is None else env, TMPDIR=str(tmp))
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, text=text, env=env,
                                cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record = records_dir() / f"{owner.tag()}_{owner.tag(proc.pid)}"
    try:
        record.touch()
        deadline = time.monotonic() + timeout
        if watcher is not None:
            out, err = _streamed(argv, proc, deadline, timeout, watcher)
        else:
            out, err = _communicated(argv, proc, deadline, timeout)
        if check and proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv, out, err)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)
    finally:
        kill_group(proc.pid, grace=2.0)      # anything the command left running (make's jobs after make died)
        record.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _communicated(argv: list[str], proc: subprocess.Popen, deadline: float, timeout: float) -> tuple[Any, Any]:
    try:
        while True:
            try:
                return proc.communicate(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise
                if proc.poll() is not None:
                    # the leader is gone (killed) but its jobs hold the pipes open: they go too
                    kill_group(proc.pid)
    except subprocess.TimeoutExpired as e:
        kill_group(proc.pid)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout, out, err) from e
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        raise


def _streamed(argv: list[str], proc: subprocess.Popen, deadline: float, timeout: float,
              watcher: Any) -> tuple[str, str | None]:
    """communicate(), but stdout is read line by line as it comes (threads: one per pipe)."""
    import threading
    out: list[str] = []
    err: list[str] = []
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, out, watcher), daemon=True)]
    if proc.stderr is not None:
        pumps.append(threading.Thread(target=_pump, args=(proc.stderr, err, None), daemon=True))
    for t in pumps:
        t.start()

    def drain() -> None:
        for t in pumps:
            t.join(10.0)

    try:
        while any(t.is_alive() for t in pumps) or proc.poll() is None:
            if time.monotonic() >= deadline:
                kill_group(proc.pid)
                proc.wait()
                drain()
                raise subprocess.TimeoutExpired(argv, timeout, "".join(out), "".join(err))
            if proc.poll() is not None and any(t.is_alive() for t in pumps):
                # the leader is gone but its jobs hold the pipes open: they go too
                kill_group(proc.pid)
            for t in pumps:
                t.join(0.2)
        proc.wait()
    except BaseException:
        kill_group(proc.pid)
        proc.wait()
        drain()
        raise
    finally:
        try:
            watcher.close(proc.returncode == 0)
        except Exception:
            pass
    return "".join(out), ("".join(err) if proc.stderr is not None else None)
