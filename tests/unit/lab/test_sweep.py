"""The start-up sweep removes what dead hil processes left and nothing a live one owns; build
commands never outlive hil (real processes, real files; no QEMU)."""
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.lab import owner, procs, sweep
from hil.lab.qemu.machine import private_dir


def _dead_tag() -> str:
    """The owner tag of a process that has exited."""
    p = subprocess.Popen(["sleep", "0.01"])
    t = owner.tag(p.pid)
    p.wait()
    return t


def test_owner_tag_tells_live_from_dead():
    assert owner.alive(owner.tag())
    assert not owner.alive(_dead_tag())
    pid, start = owner.tag().split("-")
    assert not owner.alive(f"{pid}-{int(start) + 1}")      # same pid, another process: reused


def test_run_dirs_of_dead_owners_go_live_ones_and_out_dirs_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = private_dir("hil-l1-")
    (mine / "agent.sock").touch()
    dead = tmp_path / f"hil-l1-{_dead_tag()}.abc_123"
    dead.mkdir()
    (dead / "qmp.sock").touch()
    dead_probe = tmp_path / f"hil-accel-probe-{_dead_tag()}.zz9"
    dead_probe.mkdir()
    out_dir = tmp_path / "hil-probe-1-2-abcd1234"           # a default out dir: results, never swept
    out_dir.mkdir()
    legacy = tmp_path / "hil-l1-k3j4h5g6"                    # no owner in its name: left alone
    legacy.mkdir()
    swept = sweep.Swept()
    sweep.sweep_run_dirs(swept, tmp_path)
    assert sorted(swept.paths) == sorted([str(dead), str(dead_probe)])
    assert mine.is_dir() and out_dir.is_dir() and legacy.is_dir()
    assert mine.name.startswith(f"hil-l1-{owner.tag()}.")


@pytest.mark.parametrize("kind", sweep.SNAPSHOT_DIRS)
def test_snapshot_temp_files_of_dead_owners_go(tmp_path, kind):
    snaps = tmp_path / kind
    snaps.mkdir()
    keep = [snaps / "abc.state", snaps / f".abc.state.{owner.tag()}", snaps / f".abc.state.{os.getpid()}",
            snaps / ".lock", snaps / "abc.state.info.json", snaps / f".abc.state.info.{owner.tag()}"]
    gone = [snaps / f".abc.state.{_dead_tag()}", snaps / f".abc.state.{_dead_tag().split('-')[0]}",
            snaps / f".abc.state.info.{_dead_tag()}"]
    for p in keep + gone:
        p.write_bytes(b"x")
    swept = sweep.Swept()
    sweep.sweep_snapshot_temps(swept, tmp_path)
    assert sorted(swept.paths) == sorted(map(str, gone))
    assert all(p.exists() for p in keep)


def test_cache_temp_dirs_go_only_when_their_key_lock_is_free(tmp_path):
    kind = tmp_path / "probe"
    kind.mkdir()
    free, busy = "a" * 24, "b" * 24
    for key in (free, busy):
        (kind / f".{key}.x1y2z3").mkdir()
        (kind / f".{key}.x1y2z3" / "half-built").write_bytes(b"x")
        (kind / key).mkdir()                                 # a complete entry: never touched
        (kind / key / "inputs.json").write_text("{}")
    tomb = kind / f".{free}.dead.123.456"
    tomb.mkdir()
    with open(kind / f".{busy}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                     # a build of `busy` is running
        swept = sweep.Swept()
        sweep.sweep_cache_temps(swept, tmp_path)
    assert sorted(swept.paths) == sorted([str(kind / f".{free}.x1y2z3"), str(tomb)])
    assert (kind / f".{busy}.x1y2z3").is_dir()
    assert (kind / free / "inputs.json").exists() and (kind / busy / "inputs.json").exists()


def test_a_stopped_command_takes_its_whole_group_with_it():
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["sh", "-c", "sleep 313 & sleep 313 & wait"], timeout=0.5, capture_output=True)
    assert time.monotonic() - t0 < 10
    assert not list(procs.records_dir().glob(f"{owner.tag()}_*"))
    # and a finished command leaves nothing in the background either
    done = procs.run(["sh", "-c", "sleep 313 >/dev/null 2>&1 & echo started"], timeout=30, capture_output=True,
                     text=True)
    assert done.stdout.strip() == "started"
    deadline = time.monotonic() + 5
    while _sleepers() and time.monotonic() < deadline:      # killed: gone once init reaps them
        time.sleep(0.05)
    assert not _sleepers()


def _sleepers() -> list[int]:
    """The `sleep 313` processes these tests started."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if cmd == b"sleep\x00313\x00":
                found.append(int(d.name))
    return found


def test_build_group_of_a_killed_hil_is_killed_by_the_next_sweep(tmp_path, monkeypatch):
    """A fake hil runs a build through procs.run and is SIGKILLed: PDEATHSIG takes the leader,
    the record names the group, and the sweep kills the grandchild the leader left and
    removes the build's own TMPDIR (where a compiler killed outright leaves its files)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    code = ("import sys; from hil.lab import procs; "
            "procs.run(['sh', '-c', 'sleep 300 & echo $! > %s; touch $TMPDIR/cc1.s; wait'], timeout=600)"
            % (tmp_path / "pid"))
    hil = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=os.getcwd(),
                                                                   TMPDIR=str(tmp)))
    deadline = time.monotonic() + 30
    # the group's record is written once Popen returns: the shell may have written its pid first
    while (not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text().strip()
           or not [r for r in procs.records_dir().iterdir() if r.name.startswith(f"{hil.pid}-")]):
        assert time.monotonic() < deadline and hil.poll() is None
        time.sleep(0.05)
    grandchild = int((tmp_path / "pid").read_text())
    hil.send_signal(signal.SIGKILL)
    hil.wait()
    time.sleep(0.2)
    assert owner.start_time(grandchild) is not None          # orphaned, still running
    swept = sweep.Swept()
    sweep.sweep_build_groups(swept)
    assert grandchild in swept.processes
    deadline = time.monotonic() + 5
    while owner.start_time(grandchild) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert owner.start_time(grandchild) is None or Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z"
    assert not [r for r in procs.records_dir().iterdir() if r.name.startswith(f"{hil.pid}-")]
    build_tmp = list(tmp.glob("hil-build-*"))
    assert len(build_tmp) == 1 and (build_tmp[0] / "cc1.s").exists()
    sweep.sweep_run_dirs(swept, tmp)
    assert not list(tmp.glob("hil-build-*"))


def test_a_killed_leader_does_not_leave_hil_waiting_on_its_jobs(tmp_path):
    """make killed outright: its jobs still hold the output pipe; they are killed, not awaited."""
    import threading
    pidfile = tmp_path / "pid"

    def kill_leader():
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    threading.Thread(target=kill_leader, daemon=True).start()
    t0 = time.monotonic()
    done = procs.run(["sh", "-c", f"sleep 313 & echo $$ > {pidfile}; wait"], timeout=60, capture_output=True)
    assert done.returncode == -signal.SIGKILL
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 5
    while _sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sleepers()
