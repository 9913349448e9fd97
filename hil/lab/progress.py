"""Progress of long lab work (make, apt downloads, the workload's ops) as logging records on
the `hil.progress` logger, each carrying a `hil_step` (a Step): front ends draw them
(hil/report/progress.py: a rich bar on a terminal, plain lines elsewhere); the lab itself
never writes to the console.

A Meter turns a stream of counts into records: one at most every UPDATE_S for live displays
(DEBUG: a bar redraw), and milestones at INFO (the first count, every 10 % of a known total,
every MILESTONE_S without a total, the end), which is what plain lines, pytest's live log and
a CI log show."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("hil.progress")

UPDATE_S = 0.5
MILESTONE_S = 30.0


@dataclass(frozen=True)
class Step:
    task: str                  # what runs: "make bzImage", "apt-get download linux-image-...", "L2 ops"
    done: int
    total: int | None          # None: not known (a first build of its kind)
    unit: str                  # "steps", "%", "ops"
    detail: str = ""           # the current file or op
    milestone: bool = False
    finished: bool = False

    def text(self) -> str:
        count = f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"
        if self.total and self.unit != "%":
            count += f" ({min(100, 100 * self.done // self.total)} %)"
        return f"{self.task}: {count}" + (f" {self.detail}" if self.detail else "") + (" done" if self.finished else "")


def step_of(record: logging.LogRecord) -> Step | None:
    step = getattr(record, "hil_step", None)
    return step if isinstance(step, Step) else None


class Meter:
    """Counts of one task over time; `clock` is injectable for tests."""

    def __init__(self, task: str, total: int | None, unit: str, clock: Callable[[], float] = time.monotonic,
                 every: bool = False):
        self.task, self.total, self.unit, self.clock = task, total, unit, clock
        self.every = every             # each count is a milestone (an op ending: a few per run)
        self.done = 0
        self.detail = ""
        self._last_update = -1e9
        self._last_milestone = -1e9
        self._decile = -1
        self._started = False
        self.finished = False

    def _milestone(self, now: float) -> bool:
        if not self._started or self.every:
            return True
        if self.total:
            decile = min(9, 10 * self.done // self.total)
            return decile > self._decile
        return now - self._last_milestone >= MILESTONE_S

    def update(self, done: int, detail: str = "") -> Step | None:
        """The record this count makes (and logs), or None when it is too soon after the last."""
        self.done, self.detail = done, detail
        now = self.clock()
        milestone = self._milestone(now)
        if not milestone and now - self._last_update < UPDATE_S:
            return None
        return self._emit(now, milestone, finished=False)

    def finish(self, detail: str = "") -> Step:
        if self.total is not None and self.unit != "%":
            self.total = max(self.total, self.done)
        self.detail = detail
        self.finished = True
        return self._emit(self.clock(), True, finished=True)

    def _emit(self, now: float, milestone: bool, finished: bool) -> Step:
        self._started = True
        self._last_update = now
        if milestone:
            self._last_milestone = now
            if self.total:
                self._decile = min(9, 10 * self.done // self.total)
        step = Step(self.task, self.done, self.total, self.unit, self.detail, milestone, finished)
        log.log(logging.INFO if milestone else logging.DEBUG, "%s", step.text(), extra={"hil_step": step})
        return step


# kbuild's quiet lines: "  CC      kernel/fork.o", "  CC [M]  arch/x86/kvm/x86.o", "  LD [M]  kvm.ko"
_KBUILD = re.compile(r"^ {2}([A-Z][A-Z0-9_-]{0,11})(?: \[M\])? +(\S+)\s*$")


def make_task(argv: list[str]) -> tuple[str, str]:
    """A label for a make command line and the key its step count is remembered under (the
    goals and the M= directory's name; never a path: out trees are temporary)."""
    words = []
    for arg in argv[1:]:
        if arg.startswith("M="):
            words.append("M=" + Path(arg[2:]).name)
        elif not arg.startswith("-") and "=" not in arg and "/" not in arg:
            words.append(arg)
    label = "make " + (" ".join(words) or "all")
    return label, label


class MakeSteps:
    """make's progress from its output: kbuild's step lines counted, against the count the
    last build of the same goals made (remembered in `memo`, a JSON file) when there is one."""

    def __init__(self, argv: list[str], memo: Path | None, clock: Callable[[], float] = time.monotonic):
        self.label, self.key = make_task(argv)
        self.memo = memo
        self.meter = Meter(self.label, self._remembered(), "steps", clock)

    def _remembered(self) -> int | None:
        if self.memo is None:
            return None
        try:
            value = json.loads(self.memo.read_text()).get(self.key)
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and value > 0 else None

    def line(self, text: str) -> None:
        m = _KBUILD.match(text)
        if m:   # the file's name: an out-of-tree build prints whole temporary paths
            self.meter.update(self.meter.done + 1, m.group(2).rsplit("/", 1)[-1])

    def close(self, ok: bool) -> None:
        """The end: a finished record; a successful build's count is remembered for the next."""
        if not self.meter._started:
            return                        # nothing counted (make -s, config targets): no bar
        self.meter.finish()
        if ok and self.memo is not None and self.meter.done > 0:
            try:
                known = json.loads(self.memo.read_text()) if self.memo.exists() else {}
                if not isinstance(known, dict):
                    known = {}
            except (OSError, ValueError):
                known = {}
            known[self.key] = self.meter.done
            try:
                self.memo.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.memo.with_name(self.memo.name + ".tmp")
                tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
                tmp.replace(self.memo)
            except OSError:
                pass                      # a guess for the next bar, never worth failing a build


class AptStatus:
    """apt-get's machine-readable status (-o APT::Status-Fd=1): 'dlstatus:<i>:<percent>:<text>'."""

    def __init__(self, task: str, clock: Callable[[], float] = time.monotonic):
        self.meter = Meter(task, 100, "%", clock)

    def line(self, text: str) -> None:
        parts = text.split(":", 3)
        if len(parts) == 4 and parts[0] == "dlstatus":
            try:
                percent = int(float(parts[2]))
            except ValueError:
                return
            self.meter.update(max(0, min(100, percent)))

    def close(self, ok: bool) -> None:
        if ok:
            self.meter.update(100)
            self.meter.finish()


class OpEvents:
    """The agent's progress events during run_l2 (hil/lab/agent/l2.py: one per op that ended)
    as records: the L0 side of L1Session.request and HostSession.request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.meter: Meter | None = None

    def event(self, msg: dict[str, Any]) -> None:
        try:
            done, total, detail = int(msg["done"]), int(msg["total"]), str(msg.get("detail", ""))
        except (KeyError, TypeError, ValueError):
            log.debug("agent progress event without counts: %r", msg)
            return
        if self.meter is None or self.meter.total != total:
            self.meter = Meter(str(msg.get("task", "L2 ops")), total or None, "ops", self.clock, every=True)
        if total and done >= total:
            self.meter.done = done
            self.meter.finish(detail)
            self.meter = None
        else:
            self.meter.update(done, detail)
