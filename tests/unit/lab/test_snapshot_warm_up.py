"""Before the idle-L1 snapshot is saved the agent is asked to warm up (first-start work done
once, for every restored run); a warm-up the agent refuses still leaves a snapshot. The
agent's host info is saved beside each snapshot, so a restore need not ask for it."""
from pathlib import Path

import pytest

from hil.lab import l1
from hil.lab.errors import CapabilityMissing
from hil.lab.l1 import AgentError, L1Session


class FakeMachine:
    def __init__(self):
        self.commands: list[str] = []

    def command(self, name, **args):
        self.commands.append(name)
        if name == "migrate":
            Path(args["uri"].removeprefix("file:")).write_bytes(b"state")
        if name == "query-migrate":
            return {"status": "completed"}
        return {}

    def is_running(self):
        return True


def session(requests, answer):
    s = L1Session.__new__(L1Session)
    s.machine = FakeMachine()
    s.info = {"arch": "svm", "kernel": "6.1.0-hil", "boot_l2": {"started": True, "error": ""}}

    def request(cmd, args=None, timeout=60.0):
        requests.append((cmd, list(s.machine.commands)))
        if isinstance(answer, BaseException):
            raise answer
        return answer
    s.request = request
    return s


@pytest.mark.parametrize("answer", [{"seconds": 1.2}, AgentError("L1 agent warm_up failed: no /dev/kvm"),
                                    CapabilityMissing("L1: no kvm")])
def test_warm_up_comes_before_the_vm_stops_and_never_blocks_the_snapshot(tmp_path, answer):
    requests = []
    s = session(requests, answer)
    path = tmp_path / "snap" / "k.state"
    s._save_snapshot(path)
    assert requests == [("warm_up", [])]                 # asked while L1 still ran
    assert s.machine.commands[:2] == ["stop", "migrate"] and s.machine.commands[-1] == "cont"
    assert path.read_bytes() == b"state"
    assert l1.saved_info(path) == {"arch": "svm", "kernel": "6.1.0-hil"}   # what this L1 was; not its boot's L2


def test_the_prune_keeps_the_most_recently_used_snapshots(tmp_path):
    """A dozen topologies in one suite: the one restored last survives a save, however old."""
    import os

    snaps = tmp_path / "snap"
    snaps.mkdir()
    for i in range(l1.SNAPSHOTS_KEPT):
        (snaps / f"s{i}.state").write_bytes(b"x")
        os.utime(snaps / f"s{i}.state", (1000 + i, 1000 + i))
    os.utime(snaps / "s0.state")                       # the oldest, just restored (L1Session.start)
    session([], {"seconds": 0})._save_snapshot(snaps / "new.state")
    left = sorted(p.name for p in snaps.glob("*.state"))
    assert len(left) == l1.SNAPSHOTS_KEPT and "s0.state" in left and "s1.state" not in left


def test_the_prune_takes_each_snapshots_saved_info_with_it(tmp_path):
    import os

    snaps = tmp_path / "snap"
    snaps.mkdir()
    for i in range(3):
        (snaps / f"s{i}.state").write_bytes(b"x")
        os.utime(snaps / f"s{i}.state", (1000 + i, 1000 + i))
        l1.info_path(snaps / f"s{i}.state").write_text('{"arch": "svm"}')
    tmp = snaps / ".new.state.1-2"
    tmp.write_bytes(b"y")
    l1.publish_snapshot(tmp, snaps / "new.state", kept=2, info={"arch": "vmx"})
    assert sorted(p.name for p in snaps.iterdir() if not p.name.startswith(".")) == [
        "new.state", "new.state.info.json", "s2.state", "s2.state.info.json"]
    assert l1.saved_info(snaps / "new.state") == {"arch": "vmx"}


@pytest.mark.parametrize("text", [None, "", '{"arch": "sv', "[]", '{"kernel": "6.1"}'])
def test_missing_torn_or_foreign_saved_info_makes_the_restore_ask_l1(tmp_path, text):
    snap = tmp_path / "k.state"
    if text is not None:
        l1.info_path(snap).write_text(text)
    assert l1.saved_info(snap) is None


class ExitedMachine(FakeMachine):
    def __init__(self, code, frozen=False):
        super().__init__()
        self.exitcode, self.frozen = code, frozen

    def is_frozen(self):
        return self.frozen


@pytest.mark.parametrize("code, frozen, dropped", [(None, False, True), (1, False, True), (None, True, False),
                                                   (0, False, False), (-9, False, False)])
def test_saved_info_is_dropped_when_a_restored_l1_never_answers_unless_it_was_killed_or_stopped(
        tmp_path, code, frozen, dropped):
    """A live L1 (or one QEMU ended with an error) that never answered may be a snapshot whose
    agent is gone: the next restore asks, and deletes that snapshot if it still gets no answer.
    A QEMU killed by a signal or stopped says nothing about its snapshot."""
    s = L1Session.__new__(L1Session)
    s.machine, s.snapshot, s.unconfirmed = ExitedMachine(code, frozen), tmp_path / "k.state", True
    l1.info_path(s.snapshot).write_text('{"arch": "svm"}')
    s.distrust_saved_info()
    assert l1.info_path(s.snapshot).exists() is not dropped
    s.unconfirmed = False                      # it answered: nothing is dropped, whatever came after
    l1.info_path(s.snapshot).write_text('{"arch": "svm"}')
    s.distrust_saved_info()
    assert l1.info_path(s.snapshot).exists()
