"""Progress of long work on stderr, driven only by the `logging` records hil writes: stages
(image build, L1 boot or restore, L2 run) and counted steps (hil/lab/progress.py: make's
kbuild steps, apt's download percentage, the workload's ops). On a terminal a rich live line
with the current stage and its elapsed time plus a bar per counted task, finished stages
printed above; elsewhere (CI, a pipe, make) plain timestamped lines, written as they come: the
steps' milestones only (every 10 %, every 30 s without a total, the end). -q shows warnings
only, -v adds the debug log (every step update too)."""
from __future__ import annotations

import logging
import sys
from typing import IO, Any


def step_of(record: logging.LogRecord) -> Any:
    """A counted step's record carries `hil_step` (hil.lab.progress.Step: task, done, total,
    unit, detail, milestone, finished); read by its fields, the report layer imports no lab."""
    return getattr(record, "hil_step", None)

PLAIN_FORMAT = logging.Formatter("%(asctime)s hil: %(message)s", "%H:%M:%S")


class _Stage(logging.Handler):
    """Shows the latest INFO message as the live stage, with a spinner and its elapsed time,
    and a bar per counted task (its steps at every level: they are the bar's redraws)."""

    def __init__(self, progress: Any):
        super().__init__(logging.DEBUG)
        self.progress = progress
        self.task: Any = None
        self.bars: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        step = step_of(record)
        if step is not None:
            self._step(step)
            return
        if record.levelno != logging.INFO:
            return
        try:
            text = record.getMessage()
        except Exception:      # a bad log call must not end a run
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(text, total=None, count="")

    def _step(self, step: Any) -> None:
        bar = self.bars.get(step.task)
        if step.finished:
            if bar is not None:
                self.progress.remove_task(bar)
                del self.bars[step.task]
            return
        what = f"{step.task}: {step.detail}" if step.detail else step.task
        count = f"{step.done}/{step.total} {step.unit}" if step.total else f"{step.done} {step.unit}"
        if bar is None:
            self.bars[step.task] = self.progress.add_task(what, total=step.total, completed=step.done, count=count)
        else:
            self.progress.update(bar, description=what, total=step.total, completed=step.done, count=count)


def _finished_steps_only(record: logging.LogRecord) -> bool:
    """The rich line handler: a counted task prints one line when it ends (its bar showed the rest)."""
    step = step_of(record)
    return step is None or step.finished


def milestones_only(record: logging.LogRecord) -> bool:
    """For files (hil-debug.log): a step's milestones, not every bar redraw."""
    step = step_of(record)
    return step is None or step.milestone


class Display:
    """The handlers one front end installed on the root logger; stop() before printing results."""

    def __init__(self, handlers: list[logging.Handler], live: Any = None):
        self.handlers = handlers
        self.live = live

    @property
    def rich(self) -> bool:
        return self.live is not None

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        root = logging.getLogger()
        for h in self.handlers:
            root.removeHandler(h)
            h.close()
        self.handlers = []


def level_for(verbosity: int) -> int:
    return {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)


def setup(verbosity: int, stream: IO[str] | None = None, force_terminal: bool | None = None) -> Display:
    """Install the console handlers: rich when `stream` is a terminal (or force_terminal), plain
    lines otherwise. The root logger passes everything: file handlers (hil-debug.log) filter
    for themselves."""
    stream = stream if stream is not None else sys.stderr
    level = level_for(verbosity)
    tty = force_terminal if force_terminal is not None else stream.isatty()
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for noisy in ("qemu", "asyncio", "matplotlib", "PIL"):   # qemu.qmp logs every QMP message at DEBUG
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if tty:
        try:
            from rich.console import Console
            from rich.logging import RichHandler
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        except ImportError:       # rich is a dependency; a broken install still gets plain lines
            tty = False
    if not tty:
        handler = logging.StreamHandler(stream)
        handler.setLevel(level)
        handler.setFormatter(PLAIN_FORMAT)
        root.addHandler(handler)
        return Display([handler])
    console = Console(file=stream, force_terminal=True)
    lines = RichHandler(console=console, level=level, show_path=False, markup=False, rich_tracebacks=False,
                        log_time_format="%H:%M:%S")
    root.addHandler(lines)
    if verbosity < 0:
        return Display([lines])
    if verbosity == 0:
        lines.addFilter(_finished_steps_only)
    # a counted task shows a bar (pulsing while its total is unknown) and its count
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                        TextColumn("{task.fields[count]}", markup=False), TimeElapsedColumn(), console=console,
                        transient=True)
    progress.start()
    stage = _Stage(progress)
    root.addHandler(stage)
    return Display([lines, stage], progress)
