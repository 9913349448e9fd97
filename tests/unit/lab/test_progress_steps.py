"""Counted progress (hil/lab/progress.py): milestones and redraws from a Meter, make's kbuild
steps against the last build's count, apt's status lines, the agent's op events; a real make
run through procs.run reports its steps while it runs, not when it ends."""
import logging
import sys
import subprocess
import textwrap
import time

import pytest

from hil.lab import procs, progress
from types import SimpleNamespace

from hil.lab.agent.l2 import L2Runner, OpWatch


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def records():
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            if progress.step_of(record) is not None:
                got.append(record)
    h = Keep(logging.DEBUG)
    logger = logging.getLogger("hil.progress")
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield got
    logger.removeHandler(h)
    logger.setLevel(old)


def test_a_known_total_makes_a_milestone_per_tenth_and_redraws_in_between(records):
    clock = Clock()
    m = progress.Meter("make bzImage", 100, "steps", clock)
    for i in range(1, 101):
        clock.t += 0.1
        m.update(i)
    m.finish()
    steps = [progress.step_of(r) for r in records]
    milestones = [s.done for s in steps if s.milestone]
    assert milestones == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert all(r.levelno == logging.INFO for r in records if progress.step_of(r).milestone)
    redraws = [s for s in steps if not s.milestone]
    assert redraws and all(r.levelno == logging.DEBUG for r in records if not progress.step_of(r).milestone)
    # at most one redraw per UPDATE_S: 10 s of counting, not 100 records
    assert len(steps) <= 10 / progress.UPDATE_S + len(milestones) + 1
    assert steps[-1].finished and steps[-1].text() == "make bzImage: 100/100 steps (100 %) done"


def test_without_a_total_a_milestone_comes_every_30_s(records):
    clock = Clock()
    m = progress.Meter("make modules", None, "steps", clock)
    for i in range(1, 121):
        clock.t += 1.0
        m.update(i, f"f{i}.o")
    milestones = [progress.step_of(r).done for r in records if progress.step_of(r).milestone]
    assert milestones == [1, 31, 61, 91]
    assert progress.step_of(records[0]).text() == "make modules: 1 steps f1.o"


def test_make_steps_count_kbuild_lines_and_remember_the_total(tmp_path, records):
    memo = tmp_path / "make-steps.json"
    argv = ["make", "-C", "/tmp/x/src", "-j2", f"M={tmp_path}/src/arch/x86/kvm", "CONFIG_X=y", "modules"]
    first = progress.MakeSteps(argv, memo)
    assert first.label == "make M=kvm modules" and first.meter.total is None
    for line in ["make[1]: Entering directory '/usr/src'", "  CC [M]  arch/x86/kvm/x86.o",
                 "  CC [M]  arch/x86/kvm/svm/svm.o", "warning: something", "  LD [M]  arch/x86/kvm/kvm.ko"]:
        first.line(line)
    first.close(ok=True)
    assert first.meter.done == 3
    second = progress.MakeSteps(argv, memo)
    assert second.meter.total == 3                  # the bar of the next build has a total
    second.line("  CC [M]  arch/x86/kvm/x86.o")
    assert progress.step_of(records[-1]).text() == "make M=kvm modules: 1/3 steps (33 %) x86.o"
    second.close(ok=False)                          # a failed build does not change what is remembered
    assert progress.MakeSteps(argv, memo).meter.total == 3


def test_a_make_that_counts_nothing_shows_no_bar(tmp_path, records):
    steps = progress.MakeSteps(["make", "-s", "kernelrelease"], tmp_path / "memo.json")
    steps.line("6.1.0-hil")
    steps.close(ok=True)
    assert records == [] and not (tmp_path / "memo.json").exists()


def test_apt_status_lines_become_percentages(records):
    apt = progress.AptStatus("apt-get download linux-image-6.1.0-57-amd64")
    for line in ["dlstatus:1:0.0000:Retrieving file 1 of 1", "Get:1 http://deb.debian.org ... [68.5 MB]",
                 "dlstatus:1:55.5000:Retrieving file 1 of 1", "dlstatus:x:garbage"]:
        apt.line(line)
    apt.close(ok=True)
    steps = [progress.step_of(r) for r in records]
    assert [s.done for s in steps] == [0, 55, 100, 100] and steps[-1].finished
    assert steps[1].text() == "apt-get download linux-image-6.1.0-57-amd64: 55/100 %"


def test_the_agent_reports_each_op_that_ended_and_l0_logs_each_one(records):
    sent = []
    watch = OpWatch(["cpuid", "hlt", "kicks"], sent.append)
    serial = "hil-probe: event=start version=1\n"
    watch.on_serial(serial)
    assert sent == []
    serial += "hil-probe: event=op name=cpuid count=16 tsc=1\n"
    watch.on_serial(serial)
    watch.on_serial(serial)                          # the same text again: no second event
    # two ops ended between two reads of the serial log: still one event each
    serial += ("hil-probe: event=op name=hlt count=4 tsc=1\nhil-probe: event=begin name=kicks\n"
               "hil-probe: event=op name=kicks count=4 tsc=1\n")
    watch.on_serial(serial)
    assert [(e["done"], e["total"], e["detail"]) for e in sent] == [
        (1, 3, "cpuid ended"), (2, 3, "hlt ended"), (3, 3, "kicks ended")]
    events = progress.OpEvents()
    for e in sent:
        events.event(e)
    events.event({"event": "progress"})              # malformed: ignored, not a crash
    lines = [progress.step_of(r).text() for r in records if r.levelno == logging.INFO]
    assert lines == ["L2 ops: 1/3 ops (33 %) cpuid ended", "L2 ops: 2/3 ops (66 %) hlt ended",
                     "L2 ops: 3/3 ops (100 %) kicks ended done"]


class _Ended:
    """A machine that has exited: _watch reads the serial log once and returns."""
    def is_running(self):
        return False


def test_a_line_caught_half_written_is_read_once_it_is_whole(tmp_path):
    """The probe writes its serial log while the agent reads it: an op line read half-written
    ("name=cpui") is not an op that ended (a fresh make test saw 'cpui ended')."""
    serial = tmp_path / "serial.log"
    req = SimpleNamespace(serial_log=str(serial), serial_cap=1 << 20, done_pattern="event=done")
    sent, seen = [], []
    watch = OpWatch(["cpuid"], sent.append)
    driver = SimpleNamespace(on_serial=lambda text, vm: seen.append(text))
    serial.write_text("hil-probe: event=start version=1\nhil-probe: event=op name=cpui")
    assert L2Runner._watch(_Ended(), req, None, [driver], time.monotonic() + 5, watch) == "exit"
    assert sent == [] and seen == ["hil-probe: event=start version=1\n"]
    serial.write_text("hil-probe: event=start version=1\nhil-probe: event=op name=cpuid count=2 tsc=1\n")
    L2Runner._watch(_Ended(), req, None, [driver], time.monotonic() + 5, watch)
    assert [e["detail"] for e in sent] == ["cpuid ended"]


def test_a_foreign_workload_has_no_ops_to_report():
    sent = []
    OpWatch([], sent.append).on_serial("hil-probe: event=op name=cpuid count=1 tsc=1\n")
    assert sent == []


def test_a_real_make_reports_its_steps_while_it_runs(tmp_path, records, monkeypatch):
    """procs.run reads make's output as it comes: the first step's record exists before make ends."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "Makefile").write_text(textwrap.dedent("""\
        all:
        \t@echo '  CC      a.o'
        \t@sleep 3
        \t@echo '  CC      b.o'
        \t@echo 'oops' >&2
        """))
    t0 = time.time()
    proc = procs.run(["make", "-C", str(tmp_path)], capture_output=True, text=True, timeout=60)
    t_end = time.time()
    assert proc.returncode == 0 and "  CC      b.o" in proc.stdout and "oops" in proc.stderr
    steps = [(r.created, progress.step_of(r)) for r in records]
    assert [s.done for _, s in steps if s.milestone] == [1, 2]
    assert steps[0][0] - t0 < t_end - t0 - 2.0, "the first step came only when make ended"
    memo = tmp_path / "cache/hil/progress/make-steps.json"
    assert '"make all": 2' in memo.read_text()


def test_a_make_that_outlives_its_timeout_is_stopped_with_its_output(tmp_path):
    (tmp_path / "Makefile").write_text("all:\n\t@echo '  CC      a.o'\n\t@sleep 30\n")
    with pytest.raises(subprocess.TimeoutExpired) as e:
        procs.run(["make", "-C", str(tmp_path)], capture_output=True, text=True, timeout=1.5)
    assert "a.o" in e.value.stdout


def test_plain_lines_inside_make_arrive_as_they_happen(tmp_path):
    """`make kernels` / `make test`: stderr is a pipe, not a terminal; each milestone line is
    written when it happens, not when the command ends."""
    script = tmp_path / "steps.py"
    script.write_text(textwrap.dedent("""\
        import time
        from hil.report import progress as display
        from hil.lab import progress
        display.setup(0)
        m = progress.Meter("make bzImage", 2, "steps")
        m.update(1, "a.o")
        time.sleep(5)
        m.update(2, "b.o")
        m.finish()
        """))
    (tmp_path / "Makefile").write_text(f"all:\n\t@{sys.executable} {script}\n")
    import os
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(["make", "-s", "-C", str(tmp_path)], stderr=subprocess.PIPE, text=True, env=env)
    t0 = time.monotonic()
    first = proc.stderr.readline()
    t_first = time.monotonic() - t0
    rest = proc.stderr.read()
    proc.wait(30)
    assert proc.returncode == 0, rest
    assert "hil: make bzImage: 1/2 steps (50 %) a.o" in first
    assert t_first < 4, f"the first line came after {t_first:.1f} s: buffered"
    assert "make bzImage: 2/2 steps (100 %) done" in rest


def test_l0s_channel_logs_progress_events_between_a_request_and_its_answer(records):
    """The agent's events come on the same channel as answers: L0 logs them and waits on."""
    import json
    import socket

    from hil.lab.agent.protocol import L2Request
    from hil.lab.l1 import AgentChannel

    class Running:
        exitcode = None

        @staticmethod
        def is_running():
            return True

    ours, agent = socket.socketpair()
    chan = AgentChannel(None, Running())
    chan.sock = ours
    agent.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in [
        {"event": "progress", "task": "L2 ops", "done": 1, "total": 2, "detail": "cpuid ended"},
        {"event": "progress", "task": "L2 ops", "done": 2, "total": 2, "detail": "hlt ended"},
        {"id": 1, "ok": True, "result": {"answer": 42}}]))
    assert chan.request("run_l2", {}, timeout=5) == {"answer": 42}
    assert [progress.step_of(r).text() for r in records] == [
        "L2 ops: 1/2 ops (50 %) cpuid ended", "L2 ops: 2/2 ops (100 %) hlt ended done"]
    req = L2Request(argv=["q"], serial_log="/s", done_pattern=None, window=None, ops=["cpuid", "hlt"])
    assert L2Request.from_json(req.to_json()).ops == ["cpuid", "hlt"]
    assert L2Request.from_json({k: v for k, v in req.to_json().items() if k != "ops"}).ops == []
    ours.close()
    agent.close()


def test_the_agent_runs_a_command_and_returns_its_exit_code_and_output(tmp_path, monkeypatch):
    import hil.lab.agent.early as early
    import hil.lab.agent.service as service
    monkeypatch.setattr(early, "RUN_DIR", tmp_path / "run")
    agent = service.Agent()
    reply = agent.handle({"id": 7, "cmd": "exec", "args": {"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"],
                                                          "env": {"X": "1"}}})
    assert reply == {"id": 7, "ok": True, "result": {"returncode": 3, "stdout": "out\n", "stderr": "err\n"}}
    env = agent.handle({"id": 8, "cmd": "exec", "args": {"argv": ["sh", "-c", "echo $HIL_X"], "env": {"HIL_X": "y"}}})
    assert env["result"]["stdout"] == "y\n"
    late = agent.handle({"id": 9, "cmd": "exec", "args": {"argv": ["sleep", "5"], "timeout": 0.5}})
    assert not late["ok"] and late["kind"] == "lab" and "ran past 0.5 s" in late["error"]
    missing = agent.handle({"id": 10, "cmd": "exec", "args": {"argv": [str(tmp_path / "nope")]}})
    assert not missing["ok"] and "cannot run" in missing["error"]
