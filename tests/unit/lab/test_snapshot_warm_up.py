"""Before the idle-L1 snapshot is saved the agent is asked to warm up (first-start work done
once, for every restored run); a warm-up the agent refuses still leaves a snapshot."""
from pathlib import Path

import pytest

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


def test_the_prune_keeps_the_most_recently_used_snapshots(tmp_path):
    """A dozen topologies in one suite: the one restored last survives a save, however old."""
    import os

    from hil.lab import l1
    snaps = tmp_path / "snap"
    snaps.mkdir()
    for i in range(l1.SNAPSHOTS_KEPT):
        (snaps / f"s{i}.state").write_bytes(b"x")
        os.utime(snaps / f"s{i}.state", (1000 + i, 1000 + i))
    os.utime(snaps / "s0.state")                       # the oldest, just restored (L1Session.start)
    session([], {"seconds": 0})._save_snapshot(snaps / "new.state")
    left = sorted(p.name for p in snaps.glob("*.state"))
    assert len(left) == l1.SNAPSHOTS_KEPT and "s0.state" in left and "s1.state" not in left
