"""A dead L1 is booted again for the next run, and the run that lost it is ERROR: the Runner
with the lab's prepare/open_l1/run_on replaced by fakes (no QEMU)."""
from types import SimpleNamespace

import hil.runner as runner
from hil.lab.errors import LabError
from hil.measurement import OpMeasurement
from hil.runner import Runner
from tests.unit.fakes import measurement, scenario

PER_OP = {"cpuid": {"cpuid": 1}, "pio-kernel": {"io": 1}, "pio-user": {"io": 1}, "msr": {"msr": 1},
          "hlt": {"hlt": 1, "msr": 2}}


class FakeMachine:
    def __init__(self):
        self.alive, self.exitcode = True, None

    def is_running(self):
        return self.alive


class FakeSession:
    def __init__(self):
        self.machine, self.restore, self.closed = FakeMachine(), False, False

    def start(self):
        pass

    def close(self):
        self.closed = True


def test_a_dead_l1_is_booted_again_and_the_run_that_lost_it_is_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sessions = []
    kill_next = [True]

    def open_l1(topo, prep, log_dir, parked=None, fw_cfg=None):
        sessions.append(FakeSession())
        return sessions[-1]

    def run_on(session, sc, prep, out, parked=None, boot_request=None):
        if kill_next[0]:
            kill_next[0] = False
            session.machine.alive, session.machine.exitcode = False, -9
            raise LabError("the L1 agent stopped answering (QEMU exited with -9)")
        return measurement([OpMeasurement(o.op, o.count, {r: k * o.count for r, k in PER_OP[o.op].items()})
                            for o in sc.workload.ops])

    monkeypatch.setattr(runner, "prepare", lambda topo, probe, accel: SimpleNamespace(timings={}))
    monkeypatch.setattr(runner, "open_l1", open_l1)
    monkeypatch.setattr(runner, "boot_request_for", lambda sc, prep: None)
    monkeypatch.setattr(runner, "run_on", run_on)
    sc = scenario("probe-basic", "topology.accel=tcg")
    with Runner(accel="tcg") as r:
        lost = r.run(sc, tmp_path / "run1")
        again = r.run(sc, tmp_path / "run2")
        third = r.run(sc, tmp_path / "run3")
    assert lost.verdict.value == "ERROR" and "stopped answering" in lost.error
    assert again.verdict.value == "PASS" and third.verdict.value == "PASS"
    assert len(sessions) == 2 and sessions[0].closed      # booted once more, then reused
    assert all(s.closed for s in sessions)
