"""Progress of long work on stderr, driven only by the `logging` records hil already writes
(image build, kernel build, L1 boot or restore, L2 run): on a terminal a rich live line with
the current stage and its elapsed time, the finished stages printed above it; elsewhere (CI, a
pipe) plain timestamped lines. -q shows warnings only, -v adds the debug log."""
from __future__ import annotations

import logging
import sys
from typing import IO, Any

PLAIN_FORMAT = logging.Formatter("%(asctime)s hil: %(message)s", "%H:%M:%S")


class _Stage(logging.Handler):
    """Shows the latest INFO message as the live stage, with a spinner and its elapsed time."""

    def __init__(self, progress: Any):
        super().__init__(logging.INFO)
        self.progress = progress
        self.task: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno != logging.INFO:
            return
        try:
            text = record.getMessage()
        except Exception:      # a bad log call must not end a run
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(text, total=None)


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
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    progress.start()
    stage = _Stage(progress)
    root.addHandler(stage)
    return Display([lines, stage], progress)
