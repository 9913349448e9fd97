"""The parked L2 (issue 15): the parked snapshot's key, the agent adopting a parked L2 QEMU
only when its argv is the run's, the snapshot published behind the run, and L0 parking only
a fresh L1's first run. Fakes for QEMU and the agent: the real stack is
tests/integration/test_parked.py."""
import dataclasses
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import hil.lab.run as lab_run
import hil.runner as runner
from hil.lab.agent import early, l2
from hil.lab.agent.protocol import L2Request
from hil.lab.devices import VfioPci
from hil.lab.errors import LabError
from hil.lab.kvm import tracing
from hil.lab.l1 import AgentError, Publishing, publish_snapshot
from hil.lab.request import Payload, build_request
from hil.measurement import OpMeasurement
from hil.runner import Runner
from tests.unit.fakes import measurement, scenario

# -- the key ------------------------------------------------------------------------------


@pytest.fixture
def keyed(xdg, monkeypatch, tmp_path):
    """parked_snapshot_path for probe-basic with --set overrides, and a given payload."""
    monkeypatch.setattr(lab_run, "qemu_version", lambda binary="": "QEMU emulator version 10.0.2")
    probe = tmp_path / "probe.elf"
    probe.write_bytes(b"probe v1")
    image = SimpleNamespace(key="image-key")

    def path(*overrides: str, payload: bytes | None = None, devices: bool = False) -> Path | None:
        sc = scenario("probe-basic", "topology.accel=tcg", *overrides)
        request, built = build_request(sc, SimpleNamespace(path=probe, window=(0x1000, 0x2000)))
        if devices:
            request = dataclasses.replace(request, devices=[VfioPci(model="edu")])
        return lab_run.parked_snapshot_path(sc.topology, image, "tcg", request,
                                            Payload(payload) if payload is not None else built)
    return path


def test_the_parked_key_is_the_idle_key_the_l2_argv_and_the_payload(keyed, xdg):
    base = keyed()
    assert base is not None and base.parent == xdg / "l1-parked" and base.suffix == ".state"
    assert keyed() == base                                               # stable
    assert keyed("workload.ops.0.count=7") != base                       # another L2 command line
    assert keyed(payload=b"probe v2") != base                            # other payload bytes
    assert keyed("topology.l1.memory=2048") != base                      # another idle L1
    assert keyed("topology.l2.timeout=99") == base                       # after the launch: not in L2's QEMU


def test_no_parked_snapshot_when_switched_off_without_snapshots_or_with_devices(keyed):
    assert keyed("topology.l1.park_l2=false") is None
    assert keyed("topology.l1.snapshot=false") is None
    assert keyed(devices=True) is None


def test_the_switch_does_not_change_the_idle_snapshot(xdg, monkeypatch):
    monkeypatch.setattr(lab_run, "qemu_version", lambda binary="": "QEMU emulator version 10.0.2")
    image = SimpleNamespace(key="image-key")
    on = scenario("probe-basic", "topology.accel=tcg").topology
    off = scenario("probe-basic", "topology.accel=tcg", "topology.l1.park_l2=false").topology
    assert lab_run.snapshot_path(on, image, "tcg") == lab_run.snapshot_path(off, image, "tcg") is not None


# -- the agent: park, adopt, refuse ----------------------------------------------------------


class FakeMachine:
    """L2's QEMU: launch writes a line to its serial file (as a started QEMU creates it)."""
    log: list[tuple[str, int]] = []
    count = 0

    def __init__(self, argv, **kw):
        FakeMachine.count += 1
        self.n, self.argv, self.exitcode, self.proc, self.alive = FakeMachine.count, argv, None, None, False

    def launch(self):
        FakeMachine.log.append(("launch", self.n))
        serial = Path(self.argv[self.argv.index("-serial-log") + 1])
        serial.write_text(f"started by launch {self.n}\n")
        self.alive = True

    def shutdown(self):
        FakeMachine.log.append(("shutdown", self.n))
        self.alive = False

    def command(self, name, **args):
        FakeMachine.log.append((name, self.n))
        if name == "cont":
            serial = Path(self.argv[self.argv.index("-serial-log") + 1])
            serial.write_text(serial.read_text() + "hil-probe: event=done\n")
        return []

    def is_running(self):
        return self.alive

    def output(self):
        return ""


class FakeTrace:
    """Hist triggers: `hits` per trigger, set to 0 by a clear."""
    root = Path("/nonexistent")

    def __init__(self):
        self.hits: dict = {}

    def ensure(self, trig):
        pass

    def clear(self, trig):
        FakeMachine.log.append(("clear", 0))
        self.hits[trig] = 0

    def read(self, trig):
        FakeMachine.log.append(("read", 0))
        return tracing.HistResult(entries=[], hits=self.hits.get(trig, 0), dropped=0)


@pytest.fixture
def agent(tmp_path, monkeypatch):
    monkeypatch.setattr(early, "Machine", FakeMachine)
    monkeypatch.setattr(l2, "qemu_version", lambda binary: "QEMU emulator version 10.0.2")
    FakeMachine.log, FakeMachine.count = [], 0
    r = l2.L2Runner.__new__(l2.L2Runner)
    r.run_dir, r.log_dir, r.optional, r.parked, r.trace = tmp_path, tmp_path, {}, None, FakeTrace()
    return r


def request(tmp_path: Path, *extra: str, **kw) -> L2Request:
    serial = tmp_path / "serial.log"
    return L2Request(argv=["qemu", "-serial-log", str(serial), *extra], serial_log=str(serial),
                     done_pattern=r"event=done", window=None, timeout=10.0, **kw)


def test_a_run_with_the_parked_argv_adopts_it_and_keeps_its_serial_log(agent, tmp_path):
    agent.park(request(tmp_path))
    assert sorted(FakeMachine.log) == [("clear", 0)] * 4 + [("launch", 1)]     # cleared as it started
    FakeMachine.log.clear()
    result = agent.run(request(tmp_path))
    assert result.parked and result.ended_by == "done"
    assert not [e for e in FakeMachine.log if e[0] == "launch"]                       # nothing launched
    assert "started by launch 1" in result.serial                                     # the park's log
    # the triggers cleared at park time are only checked (read, empty), before the guest's
    # first instruction; the run ends it as ever
    names = [name for name, _ in FakeMachine.log]
    assert "clear" not in names[:names.index("cont")] and names[:names.index("cont")].count("read") == 4
    assert names[-1] == "shutdown" and agent.parked is None
    again = agent.run(request(tmp_path))                  # the parked one is used once
    assert not again.parked and ("launch", 2) in FakeMachine.log


def test_a_run_with_another_argv_shuts_the_parked_one_down_first(agent, tmp_path):
    agent.park(request(tmp_path))
    result = agent.run(request(tmp_path, "-smp", "2"))
    assert not result.parked
    assert FakeMachine.log.index(("shutdown", 1)) < FakeMachine.log.index(("launch", 2))
    assert result.argv == request(tmp_path, "-smp", "2").argv


def test_a_dead_parked_qemu_is_not_adopted(agent, tmp_path):
    agent.park(request(tmp_path))
    agent.parked.machine.alive = False
    result = agent.run(request(tmp_path))
    assert not result.parked and ("launch", 2) in FakeMachine.log


def test_parking_again_replaces_the_parked_one_and_devices_are_refused(agent, tmp_path):
    agent.park(request(tmp_path))
    agent.park(request(tmp_path, "-smp", "2"))
    assert [e for e in FakeMachine.log if e[0] != "clear"] == [("launch", 1), ("shutdown", 1), ("launch", 2)]
    with pytest.raises(LabError, match="devices"):
        agent.park(request(tmp_path, devices=[VfioPci(model="edu")]))
    assert agent.parked is not None and agent.parked.argv[-1] == "2"      # the refused one changed nothing


# -- L0: the snapshot published behind the run ---------------------------------------------


def test_publishing_renames_into_place_and_prunes_its_own_directory(tmp_path):
    parked = tmp_path / "l1-parked"
    parked.mkdir()
    for i in range(3):
        (parked / f"old{i}.state").write_bytes(b"old")
        os.utime(parked / f"old{i}.state", (time.time() - 100 + i, time.time() - 100 + i))
    idle = tmp_path / "l1-snapshot" / "idle.state"
    idle.parent.mkdir()
    idle.write_bytes(b"idle")
    tmp = parked / ".new.state.123-456"
    tmp.write_bytes(b"state")
    pub = Publishing(tmp, parked / "new.state", kept=2)
    assert pub.join() and pub.seconds >= 0
    assert sorted(p.name for p in parked.glob("*.state")) == ["new.state", "old2.state"]
    assert idle.exists() and not tmp.exists()


def test_a_failed_publication_leaves_no_temp_file_and_is_not_raised(tmp_path, monkeypatch):
    tmp = tmp_path / ".new.state.123-456"
    tmp.write_bytes(b"state")

    def no_space(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", no_space)
    pub = Publishing(tmp, tmp_path / "new.state", kept=2)
    assert pub.join() is False and isinstance(pub.error, OSError)
    assert not tmp.exists() and not (tmp_path / "new.state").exists()
    tmp.write_bytes(b"state")
    with pytest.raises(OSError):                          # the same, called directly, raises
        publish_snapshot(tmp, tmp_path / "new.state", 2)
    assert not tmp.exists()


class FakeL1:
    def __init__(self, park_answer=None, save_error=None, alive=True):
        self.calls: list[str] = []
        self.park_answer, self.save_error = park_answer, save_error
        self.machine = SimpleNamespace(is_running=lambda: alive)

    def request(self, cmd, args=None, timeout=60.0):
        self.calls.append(cmd)
        if isinstance(self.park_answer, BaseException):
            raise self.park_answer
        return {"seconds": 0.1}

    def save_snapshot_behind(self, path, kept):
        self.calls.append("save")
        if self.save_error:
            raise self.save_error
        assert kept == lab_run.PARKED_KEPT
        return "publishing"


def test_park_then_save_and_each_failure_only_loses_the_shortcut(tmp_path):
    req = request(tmp_path)
    ok = FakeL1()
    assert lab_run._park(ok, req, tmp_path / "p.state") == "publishing" and ok.calls == ["park_l2", "save"]
    refused = FakeL1(park_answer=AgentError("L1 agent park_l2 failed: no /dev/kvm"))
    assert lab_run._park(refused, req, tmp_path / "p.state") is None and refused.calls == ["park_l2"]
    full = FakeL1(save_error=LabError("L1 snapshot migration failed"))
    assert lab_run._park(full, req, tmp_path / "p.state") is None
    dead = FakeL1(save_error=LabError("L1 QEMU exited"), alive=False)
    with pytest.raises(LabError):
        lab_run._park(dead, req, tmp_path / "p.state")


# -- L0: which run parks ---------------------------------------------------------------------


class FakeSession:
    def __init__(self):
        self.machine = SimpleNamespace(is_running=lambda: True, exitcode=None)
        self.restore, self.closed = False, False

    def start(self):
        pass

    def close(self):
        self.closed = True


@pytest.mark.parametrize("park", [True, False])
def test_only_a_parking_runners_first_run_on_an_l1_gets_the_parked_path(tmp_path, monkeypatch, park):
    """... and only the first run of a booted L1 its boot request (hil/lab/agent/early.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    opened, runs = [], []
    boot = ("the request", {"opt/hil/l2-request": b"{}"})
    monkeypatch.setattr(runner, "prepare", lambda topo, probe, accel: SimpleNamespace(timings={}))
    monkeypatch.setattr(runner, "parked_snapshot_for", lambda sc, prep: tmp_path / "p.state")
    monkeypatch.setattr(runner, "boot_request_for", lambda sc, prep: boot)
    monkeypatch.setattr(runner, "open_l1", lambda topo, prep, log_dir, parked=None, fw_cfg=None:
                        opened.append((parked, fw_cfg)) or FakeSession())

    def run_on(session, sc, prep, out, parked=None, boot_request=None):
        runs.append((parked, boot_request))
        return measurement([OpMeasurement(o.op, o.count, {}) for o in sc.workload.ops])
    monkeypatch.setattr(runner, "run_on", run_on)
    sc = scenario("probe-basic", "topology.accel=tcg")
    with Runner(accel="tcg", park=park) as r:
        r.run(sc, tmp_path / "run1")
        r.run(sc, tmp_path / "run2")                      # the same L1, no longer fresh
    expected = tmp_path / "p.state" if park else None
    assert opened == [(expected, boot[1])] and runs == [(expected, "the request"), (None, None)]


def test_the_parked_snapshot_is_restored_when_it_exists_else_the_idle_one(xdg, tmp_path, monkeypatch):
    monkeypatch.setattr(lab_run, "qemu_version", lambda binary="": "QEMU emulator version 10.0.2")
    monkeypatch.setattr(lab_run, "L1Session", lambda build, **kw: kw["snapshot"])
    topo = scenario("probe-basic", "topology.accel=tcg").topology
    prep = SimpleNamespace(image=SimpleNamespace(key="k"), accel=SimpleNamespace(accel="tcg"))
    parked = tmp_path / "p.state"
    monkeypatch.setattr(lab_run, "l1_builder", lambda *a: None)
    idle = lab_run.open_l1(topo, prep, tmp_path, parked)
    assert idle == lab_run.snapshot_path(topo, prep.image, "tcg")
    parked.write_bytes(b"state")
    assert lab_run.open_l1(topo, prep, tmp_path, parked) == parked


def test_a_parked_trigger_that_counted_something_is_cleared_before_cont(agent, tmp_path):
    agent.park(request(tmp_path))
    agent.trace.hits[tracing.EXITS_ALL] = 3              # not what happens; if it did, it must not count
    FakeMachine.log.clear()
    agent.run(request(tmp_path))
    before_cont = [name for name, _ in FakeMachine.log][:[n for n, _ in FakeMachine.log].index("cont")]
    assert before_cont.count("clear") == 1 and agent.trace.hits[tracing.EXITS_ALL] == 0


def test_a_run_not_adopting_clears_every_trigger(agent, tmp_path):
    agent.park(request(tmp_path))
    FakeMachine.log.clear()
    agent.run(request(tmp_path, "-smp", "2"))
    before_cont = [name for name, _ in FakeMachine.log][:[n for n, _ in FakeMachine.log].index("cont")]
    assert before_cont.count("clear") == 4 and "read" not in before_cont
