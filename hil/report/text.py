"""The table a developer reads: reason | predicted | measured | verdict, per case."""
from __future__ import annotations

from hil.verdict import RunResult, Verdict
from hil.verdict.judge import show


def render(result: RunResult) -> str:
    out = [f"scenario {result.scenario}  profile {result.profile or '-'}  arch {result.arch or '-'}"]
    accel = result.provenance.get("accel", {})
    if accel:
        out.append(f"accelerator {accel.get('accel')} ({accel.get('reason')})")
    widths = (22, 28, 12, 10, 8)
    head = ("case", "reason", "predicted", "measured", "verdict")
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    out.append("  ".join("-" * w for w in widths))
    for case in result.cases:
        if not case.rows:
            out.append("  ".join([case.name.ljust(widths[0]), "-".ljust(widths[1]), "-".ljust(widths[2]),
                                  "-".ljust(widths[3]), case.verdict.value]))
        for i, row in enumerate(case.rows):
            verdict = ("ok" if row.ok else "MISMATCH") if row.judged else "(not judged)"
            out.append("  ".join([(case.name if i == 0 else "").ljust(widths[0]), row.reason.ljust(widths[1]),
                                  show(row.predicted).ljust(widths[2]), str(row.measured).ljust(widths[3]),
                                  verdict if i else f"{case.verdict.value} {verdict}"]))
        if case.detail and case.verdict is not Verdict.PASS:
            out.append(f"    {case.verdict.value}: {case.detail}")
    counts = {v: sum(1 for c in result.cases if c.verdict is v) for v in Verdict}
    out.append(f"result: {result.verdict.value}  " + ", ".join(f"{n} {v.value.lower()}" for v, n in counts.items() if n))
    return "\n".join(out)
