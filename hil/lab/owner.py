"""Who owns a temporary thing hil leaves on disk: a tag naming the creating process by its
pid and its start time, so that a later hil can tell a live owner from a dead one (a pid
alone may have been reused). Standard library only: the L1 agent imports it too."""
from __future__ import annotations

import os
import re
from pathlib import Path

#: "<pid>-<start time in clock ticks since boot>", as embedded in names
TAG_RE = re.compile(r"(?P<pid>[0-9]+)-(?P<start>[0-9]+)")


def start_time(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/PID/stat), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def tag(pid: int | None = None) -> str:
    """This process's (or pid's) owner tag."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{start_time(pid) or 0}"


def alive(owner: str) -> bool:
    """Whether the process an owner tag names still runs. A bare pid (an older name) counts
    as alive while some process has that pid: it is never removed by mistake."""
    m = TAG_RE.fullmatch(owner)
    if m is None:
        return bool(owner.isdigit() and start_time(int(owner)) is not None)
    return start_time(int(m["pid"])) == int(m["start"])
