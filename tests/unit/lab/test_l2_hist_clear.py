"""The agent clears its hist triggers all at once while L2's QEMU starts paused, and every
clear is done before the guest is let run (`cont`): no exit of the run is ever cleared away."""
import threading
import time
from pathlib import Path

import pytest

from hil.lab.agent import early, l2
from hil.lab.agent.protocol import L2Request
from hil.lab.errors import LabError
from hil.lab.kvm import tracing
from hil.lab.results import check_result
from hil.paths import ROOT
from hil.scenario import load_scenario


class FakeTrace:
    def __init__(self, n):
        self.barrier = threading.Barrier(n, timeout=5.0)   # passes only if all clears overlap
        self.cleared: list[float] = []
        self.lock = threading.Lock()
        self.root = Path("/nonexistent")

    def ensure(self, trig):
        pass

    def clear(self, trig):
        self.barrier.wait()
        time.sleep(0.05)
        with self.lock:
            self.cleared.append(time.monotonic())

    def read(self, trig):
        return tracing.HistResult(entries=[], hits=0, dropped=0)


class FakeMachine:
    events: list[tuple[str, float]] = []

    def __init__(self, argv, **kw):
        self.argv, self.exitcode, self.proc = argv, None, None

    def launch(self):
        FakeMachine.events.append(("launched", time.monotonic()))

    def shutdown(self):
        pass

    def command(self, name, **args):
        FakeMachine.events.append((name, time.monotonic()))
        if name == "cont":
            Path(self.argv[self.argv.index("-serial-log") + 1]).write_text("hil-probe: event=done\n")
        return []

    def is_running(self):
        return True

    def output(self):
        return ""


def fake_runner(tmp_path, monkeypatch, machine):
    monkeypatch.setattr(early, "Machine", machine)
    monkeypatch.setattr(l2, "qemu_version", lambda binary: "QEMU emulator version 10.0.2")
    runner = l2.L2Runner.__new__(l2.L2Runner)
    runner.run_dir, runner.log_dir, runner.optional, runner.parked = tmp_path, tmp_path, {}, None
    return runner


def test_clears_overlap_and_end_before_cont(tmp_path, monkeypatch):
    runner = fake_runner(tmp_path, monkeypatch, FakeMachine)
    serial = tmp_path / "serial.log"
    req = L2Request(argv=["qemu", "-serial-log", str(serial)], serial_log=str(serial),
                    done_pattern=r"event=done", window=(0x1000, 0x2000), timeout=10.0)
    runner.trace = FakeTrace(5)          # four fixed triggers and the window's
    FakeMachine.events = []
    result = runner.run(req)
    assert result.ended_by == "done"
    cont = next(t for name, t in FakeMachine.events if name == "cont")
    assert len(runner.trace.cleared) == 5 and max(runner.trace.cleared) <= cont


class SlowQuit(FakeMachine):
    def shutdown(self):
        time.sleep(0.3)
        FakeMachine.events.append(("quit", time.monotonic()))


def test_l2_quits_after_the_answer_and_before_the_next_l2(tmp_path, monkeypatch):
    """Its counters read, L2's QEMU quits in the background (0.2-0.5 s under TCG off every
    run's answer); the next run or park waits for it."""
    runner = fake_runner(tmp_path, monkeypatch, SlowQuit)
    serial = tmp_path / "serial.log"
    req = L2Request(argv=["qemu", "-serial-log", str(serial)], serial_log=str(serial),
                    done_pattern=r"event=done", window=None, timeout=10.0)
    runner.trace = FakeTrace(4)
    FakeMachine.events = []
    runner.run(req)
    answered = time.monotonic()
    assert "quit" not in [name for name, _ in FakeMachine.events]
    runner.trace = FakeTrace(4)
    runner.run(req)
    quit_at = next(t for name, t in FakeMachine.events if name == "quit")
    second_launch = [t for name, t in FakeMachine.events if name == "launched"][1]
    assert answered < quit_at <= second_launch


class DroppingTrace(FakeTrace):
    """The accepted-IRQ trigger lost one event (its map full, or a key one CPU inserts while an
    interrupt on the same CPU inserts it too)."""
    def clear(self, trig):
        pass

    def read(self, trig):
        return tracing.HistResult(entries=[], hits=3, dropped=1 if trig is tracing.ACCEPTED_IRQS else 0)


def test_a_trigger_that_dropped_events_is_named_and_the_run_is_an_error(tmp_path, monkeypatch):
    runner = fake_runner(tmp_path, monkeypatch, FakeMachine)
    serial = tmp_path / "serial.log"
    runner.trace = DroppingTrace(1)
    result = runner.run(L2Request(argv=["qemu", "-serial-log", str(serial)], serial_log=str(serial),
                                  done_pattern=r"event=done", window=None, timeout=10.0))
    assert result.dropped == {"kvm/kvm_apic_accept_irq hist:keys=common_cpu,apicid,vec:size=2048": 1}
    with pytest.raises(LabError, match=r"dropped 1 events.*"
                       r"\(1 by kvm/kvm_apic_accept_irq hist:keys=common_cpu,apicid,vec"):
        check_result(result, load_scenario("probe-basic", root=ROOT))


class RecordingTrace(FakeTrace):
    def __init__(self, root):
        super().__init__(1)
        self.root, self.ensured = root, []

    def ensure(self, trig):
        self.ensured.append(trig)


@pytest.mark.parametrize("direct", [False, True])
def test_l1s_tick_is_traced_only_on_a_kernel_with_direct_delivery(tmp_path, direct):
    for event in ["timer/tick_stop", "kvm/kvm_dedicated_kick"] + (["kvm/kvm_dedicated_relay"] if direct else []):
        (tmp_path / "events" / event).mkdir(parents=True)
    runner = l2.L2Runner(tmp_path / "run", tmp_path / "logs", RecordingTrace(tmp_path))
    assert ("tick_stops" in runner.optional) is direct and "kicks" in runner.optional
    assert (tracing.TICK_STOPS in runner.trace.ensured) is direct
