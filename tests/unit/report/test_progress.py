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
