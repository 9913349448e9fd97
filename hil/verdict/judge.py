"""Judging one run: one case per probe op, plus the cross-check of KVM's own counters."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from hil.lab.measurement import Measurement
from hil.model import Bound, Prediction, compare, names, predict
from hil.scenario import Scenario
from hil.scenario.prediction import predict_op, resolve_profile


class Verdict(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"

    @staticmethod
    def worst(verdicts: list["Verdict"]) -> "Verdict":
        order = [Verdict.ERROR, Verdict.FAIL, Verdict.SKIP, Verdict.PASS]
        return next((v for v in order if v in verdicts), Verdict.PASS)


@dataclass
class ReasonRow:
    reason: str
    predicted: str       # "16" or "0..inf"
    measured: int
    ok: bool
    judged: bool = True


@dataclass
class CaseResult:
    name: str
    verdict: Verdict
    detail: str = ""
    rows: list[ReasonRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    scenario: str
    verdict: Verdict
    cases: list[CaseResult]
    profile: str = ""
    arch: str = ""
    error: str = ""
    measurement: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.ERROR: 2, Verdict.SKIP: 3}[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        for c in d["cases"]:
            c["verdict"] = c["verdict"].value if isinstance(c["verdict"], Verdict) else c["verdict"]
        return d


def show(bound: Bound) -> str:
    if bound.high is not None and bound.low == bound.high:
        return str(bound.low)
    return f"{bound.low}..{'inf' if bound.high is None else bound.high}"


def compare_exits(predicted: Prediction | dict[str, Bound], measured: dict[str, int],
                  judged: set[str] | None) -> list[ReasonRow]:
    """The model's comparison, with reasons outside `judged` reported but not held against."""
    pred = predicted if isinstance(predicted, Prediction) else Prediction("expect", "", exits=dict(predicted))
    return [ReasonRow(r.reason, show(r.predicted), r.measured, r.ok or (judged is not None and r.reason not in judged),
                      judged is None or r.reason in judged) for r in compare(pred, measured)]


def _probe_case(scenario: Scenario, m: Measurement, profile: str, op: str, count: int,
                judged: set[str] | None) -> CaseResult:
    name = f"{op}x{count}"
    got = m.op(op)
    if got is None or got.count is None:
        return CaseResult(name, Verdict.ERROR, f"the probe did not report running {op}")
    if got.count != count:
        return CaseResult(name, Verdict.ERROR, f"the probe ran {op} {got.count} times, asked for {count}")
    pred = predict_op(op, count, profile, m.arch)
    rows = compare_exits(pred, got.exits, judged)
    bad = [r for r in rows if not r.ok]
    detail = "; ".join(f"{r.reason}: predicted {r.predicted}, measured {r.measured}" for r in bad)
    return CaseResult(name, Verdict.FAIL if bad else Verdict.PASS, detail, rows,
                      {"predicted_counters": {k: show(v) for k, v in pred.counters.items()},
                       "assumptions": pred.assumptions, "tsc": got.tsc})


def _ambient_case(m: Measurement, profile: str) -> CaseResult:
    """Window exits outside every op's code may only be ambient noise the profile allows."""
    ambient = predict([], profile, m.arch)
    rows = compare_exits(ambient, m.exits_window_unattributed, None)
    bad = [r for r in rows if not r.ok]
    return CaseResult("window-glue", Verdict.FAIL if bad else Verdict.PASS,
                      "; ".join(f"{r.reason}: {r.measured} exits in probe glue code" for r in bad), rows)


def _counters_case(m: Measurement) -> CaseResult:
    """KVM's own counters against its kvm_exit tracepoint over the whole L2 run."""
    if not m.counters:
        if m.ended_by == "exit":
            return CaseResult("kvm-counters", Verdict.SKIP, "L2 ended itself before its KVM counters could be read")
        return CaseResult("kvm-counters", Verdict.ERROR, "no KVM stats were read (query-stats failed?)")
    io_name, hlt_name = names.reason(m.arch, "IO"), names.reason(m.arch, "HLT")
    # The agent pauses L2 before reading either side, so both describe the same instant.
    checks = [
        ("exits == sum(kvm_exit)", m.counters.get("exits", -1), sum(m.exits_all.values())),
        ("io_exits == kvm_exit[io]", m.counters.get("io_exits", -1), m.exits_all.get(io_name, 0)),
        ("halt_exits == kvm_exit[hlt]", m.counters.get("halt_exits", -1), m.exits_all.get(hlt_name, 0)),
    ]
    rows, bad = [], []
    for label, counter, traced in checks:
        ok = counter == traced
        rows.append(ReasonRow(label, str(counter), traced, ok))
        if not ok:
            bad.append(f"{label}: counter {counter}, tracepoint {traced}")
    return CaseResult("kvm-counters", Verdict.FAIL if bad else Verdict.PASS, "; ".join(bad), rows)


def judge(scenario: Scenario, m: Measurement) -> RunResult:
    profile = resolve_profile(scenario.profile, m.arch)
    judged = None if scenario.expect.reasons == "all" else set(scenario.expect.reasons)
    cases: list[CaseResult] = []
    if scenario.workload.kind == "probe":
        cases += [_probe_case(scenario, m, profile, o.op, o.count, judged) for o in scenario.workload.ops]
        cases.append(_ambient_case(m, profile))
    else:
        bounds = {r: Bound(lo, hi) for r, (lo, hi) in scenario.expect.exits.items()}
        rows = compare_exits(bounds, m.exits_all, set(bounds))
        bad = [r for r in rows if not r.ok]
        cases.append(CaseResult("whole-run", Verdict.FAIL if bad else Verdict.PASS,
                                "; ".join(f"{r.reason}: expected {r.predicted}, measured {r.measured}" for r in bad), rows))
    cases.append(_counters_case(m))
    return RunResult(scenario.name, Verdict.worst([c.verdict for c in cases]), cases, profile, m.arch,
                     measurement=m.to_dict(), provenance=m.provenance, logs=m.logs)


def error_result(scenario_name: str, error: str, logs: dict[str, str] | None = None,
                 provenance: dict[str, Any] | None = None) -> RunResult:
    return RunResult(scenario_name, Verdict.ERROR, [CaseResult("lab", Verdict.ERROR, error)], error=error,
                     logs=logs or {}, provenance=provenance or {})


def skip_result(scenario_name: str, reason: str) -> RunResult:
    return RunResult(scenario_name, Verdict.SKIP, [CaseResult("lab", Verdict.SKIP, reason)], error=reason)
