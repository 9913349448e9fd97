"""L1's health after a run that gave a guest a CPU's interrupts (l2.dedicated: direct): a host
vector that leaked into the guest, or host work that never reached that CPU, shows as an RCU
stall, a CSD-lock wait or the leak detector's tracepoint long before L1 hangs outright."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# L1 console lines that mean the host lost interrupts or work on a CPU (6.1's wording)
SICK = re.compile(r"rcu: INFO: \S+ (?:self-)?detected stall|rcu: INFO: \S+ detected expedited stall"
                  r"|csd: (?:Detected non-responsive CSD lock|CSD lock)|watchdog: BUG: soft lockup"
                  r"|No irq handler for vector|dedicated-cpu-direct: host vector")


def console_problems(console_log: Path, start: int = 0) -> list[str]:
    """The sick lines the L1 console printed from byte `start` on (missing log: none)."""
    try:
        with console_log.open("rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if SICK.search(line)]


def leaks(hists: dict[str, list[dict[str, Any]]]) -> int:
    """Hits of kvm_dedicated_leak (dedicated-cpu-direct's leak detector), every vCPU."""
    return sum(int(e.get("hitcount", 0)) for e in hists.get("direct_leaks", []))


#: tick dependencies by bit (include/linux/tick.h, TICK_DEP_BIT_*)
TICK_DEPS = ("POSIX_TIMER", "PERF_EVENTS", "SCHED", "CLOCK_UNSTABLE", "RCU", "RCU_EXP")


def tick_kept(hists: dict[str, list[dict[str, Any]]], cpu: int) -> dict[str, int]:
    """Why L1's tick could not stop on `cpu` during the run: tick_stop's refusals by dependency,
    and "stopped": the times it did."""
    out: dict[str, int] = {}
    for e in hists.get("tick_stops", []):
        if e.get("common_cpu") != cpu:
            continue
        dep = int(e.get("dependency", 0))
        name = ("stopped" if e.get("success") else
                "|".join(n for i, n in enumerate(TICK_DEPS) if dep >> i & 1) or f"dependency {dep:#x}")
        out[name] = out.get(name, 0) + int(e.get("hitcount", 0))
    return out


def isr_in_service(info_lapic: str) -> list[str] | None:
    """The vectors in service in QEMU's `info lapic` output (its "ISR" line: "(none)" or hex
    vectors); None when the output has no such line."""
    for line in info_lapic.splitlines():
        if line.startswith("ISR"):
            rest = line[3:].strip()
            return [] if rest in ("", "(none)") else rest.split()
    return None


def health(agent_answers: bool, agent_error: str, problems: list[str], leak_count: int,
           isr: list[str] | None = None, tick: dict[str, int] | None = None) -> dict[str, Any]:
    """isr: vectors in service in L1's physical APIC of the direct CPU after the run (None: not
    read); tick: tick_kept() of that CPU (None: not traced)."""
    return {"agent_answers": agent_answers, "agent_error": agent_error, "console_problems": problems[:20],
            "leaks": leak_count, "l1_isr": isr, "tick": tick}
