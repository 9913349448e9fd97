"""Progress on stderr from logging records: plain timestamped lines when not a terminal, a rich
live stage on one; -q warnings only, -v debug."""
import io
import logging
import re

import pytest

from hil.report import progress

log = logging.getLogger("hil.lab.run")


@pytest.fixture
def display():
    made = []

    def make(verbosity, stream, **kw):
        d = progress.setup(verbosity, stream, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


@pytest.mark.parametrize("verbosity,shown", [(-1, ["warn"]), (0, ["info", "warn"]), (1, ["debug", "info", "warn"])])
def test_plain_lines_by_verbosity(display, verbosity, shown):
    stream = io.StringIO()
    display(verbosity, stream)
    log.debug("debug")
    log.info("info")
    log.warning("warn")
    lines = stream.getvalue().splitlines()
    assert [l.split("hil: ")[1] for l in lines] == shown
    assert all(re.match(r"\d\d:\d\d:\d\d hil: ", l) for l in lines)


def test_rich_on_a_terminal_shows_stages_and_stops_cleanly(display):
    stream = io.StringIO()
    d = display(0, stream, force_terminal=True)
    assert d.rich
    log.info("L1 nested-svm: booting")
    log.info("L2: probe-basic on svm")
    d.stop()
    out = stream.getvalue()
    assert "L1 nested-svm: booting" in out and "L2: probe-basic on svm" in out
    assert "\x1b[" in out                    # a terminal rendering, not plain lines
    before = len(logging.getLogger().handlers)
    log.info("after stop")
    assert "after stop" not in stream.getvalue() and len(logging.getLogger().handlers) == before


def test_quiet_on_a_terminal_has_no_live_stage(display):
    stream = io.StringIO()
    d = display(-1, stream, force_terminal=True)
    log.info("hidden")
    log.warning("shown")
    d.stop()
    assert not d.rich and "hidden" not in stream.getvalue() and "shown" in stream.getvalue()


def _steps():
    """A make of 40 steps counted over 8 s of a fake clock, then finished."""
    from hil.lab import progress as steps
    t = [0.0]
    m = steps.Meter("make bzImage", 40, "steps", clock=lambda: t[0])
    for i in range(1, 41):
        t[0] += 0.2
        m.update(i, f"f{i}.o")
    m.finish()


def test_plain_lines_show_a_counted_tasks_milestones_not_its_redraws(display):
    stream = io.StringIO()
    display(0, stream)
    _steps()
    lines = [l.split("hil: ")[1] for l in stream.getvalue().splitlines()]
    assert lines[0] == "make bzImage: 1/40 steps (2 %) f1.o"
    assert lines[-1] == "make bzImage: 40/40 steps (100 %) done"
    assert len(lines) == 11                   # first, every tenth (4..36), the end
    verbose = io.StringIO()
    d = display(1, verbose)
    _steps()
    d.stop()
    assert len(verbose.getvalue().splitlines()) > len(lines)     # -v: every redraw too


def test_quiet_hides_counted_tasks(display):
    stream = io.StringIO()
    display(-1, stream)
    _steps()
    assert stream.getvalue() == ""


def test_rich_draws_a_bar_with_the_count_and_prints_the_end_once(display):
    stream = io.StringIO()
    d = display(0, stream, force_terminal=True)
    from hil.lab import progress as steps
    m = steps.Meter("make bzImage", 40, "steps")
    m.update(12, "kernel/fork.o")
    d.live.refresh()
    live = stream.getvalue()
    assert "make bzImage: kernel/fork.o" in live and "12/40 steps" in live and "━" in live
    m.update(40)
    m.finish()
    d.stop()
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())     # the terminal's colours
    assert out.count("make bzImage: 40/40 steps (100 %) done") == 1
    assert "(10 %)" not in out                 # milestones are the bar's, not printed lines


def test_the_debug_file_keeps_milestones_only():
    import logging as lg
    rec = lg.LogRecord("hil.progress", lg.DEBUG, __file__, 1, "x", (), None)
    assert progress.milestones_only(rec)                       # not a step: kept
    from hil.lab.progress import Step
    rec.hil_step = Step("make", 3, 10, "steps", milestone=False)
    assert not progress.milestones_only(rec)
    rec.hil_step = Step("make", 3, 10, "steps", milestone=True)
    assert progress.milestones_only(rec)
