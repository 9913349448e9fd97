"""Lab failures: the lab broke (ERROR), as opposed to the kernel contradicting the model (FAIL)."""
from __future__ import annotations


class LabError(RuntimeError):
    """Infrastructure failure: boot failed, timeout, crash, missing tool."""


class LaunchError(LabError):
    """QEMU did not start: carries the command line and what it printed."""

    def __init__(self, message: str, argv: list[str], output: str, exitcode: int | None):
        super().__init__(f"{message}\ncommand: {argv}\nexit code: {exitcode}\noutput:\n{output}")
        self.argv = argv
        self.output = output
        self.exitcode = exitcode


class CapabilityMissing(LabError):
    """A capability the run needs is absent: reported as SKIP with this reason."""
