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
