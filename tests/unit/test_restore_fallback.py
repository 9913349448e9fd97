"""A snapshot QEMU refuses is deleted and L1 booted; one whose QEMU was killed is kept."""
from pathlib import Path

import pytest

from hil.lab.errors import LabError
from hil.runner import RunTimeout, _start_l1


class FakeMachine:
    def __init__(self, exitcode):
        self.exitcode = exitcode


class FakeSession:
    def __init__(self, snapshot: Path, fail: BaseException | None, exitcode=None):
        self.snapshot = snapshot
        self.restore = snapshot.exists()
        self.fail = fail
        self.machine = FakeMachine(exitcode)
        self.closed = self.started = False

    def start(self):
        self.started = True
        if self.fail:
            raise self.fail

    def close(self):
        self.closed = True


def _opener(sessions):
    it = iter(sessions)
    return lambda: next(it)


def test_a_refused_snapshot_is_deleted_and_l1_booted(tmp_path):
    snap = tmp_path / "x.state"
    snap.write_bytes(b"truncated")
    bad = FakeSession(snap, LabError("L1 snapshot migration failed"), exitcode=1)
    sessions = [bad]
    session = _start_l1("t", lambda: sessions.pop(0) if sessions else FakeSession(snap, None))
    assert bad.closed and not snap.exists()
    assert session is not bad and session.started and not session.restore


@pytest.mark.parametrize("error,exitcode", [(LabError("QEMU exited"), -9), (LabError("QEMU exited"), 0),
                                            (RunTimeout("late"), None),
                                            (KeyboardInterrupt("signal 15"), None)])
def test_a_killed_or_stopped_restore_keeps_the_snapshot(tmp_path, error, exitcode):
    snap = tmp_path / "x.state"
    snap.write_bytes(b"good")
    s = FakeSession(snap, error, exitcode)
    with pytest.raises(type(error)):
        _start_l1("t", _opener([s]))
    assert s.closed and snap.exists()


def test_a_refused_parked_snapshot_then_a_refused_idle_one_are_both_deleted_and_l1_booted(tmp_path):
    parked, idle = tmp_path / "p.state", tmp_path / "i.state"
    parked.write_bytes(b"truncated")
    idle.write_bytes(b"truncated")
    opened = []

    def open_session():       # as hil.lab.run.open_l1: the parked one while it exists, else the idle one
        snap = parked if parked.exists() else idle
        opened.append(FakeSession(snap, LabError("L1 snapshot migration failed") if snap.exists() else None,
                                  exitcode=1))
        return opened[-1]
    session = _start_l1("t", open_session)
    assert [s.snapshot for s in opened] == [parked, idle, idle] and not parked.exists() and not idle.exists()
    assert session is opened[-1] and session.started and not session.restore
    assert all(s.closed for s in opened[:2])
