"""Judging one run: one case per probe op, plus the cross-check of KVM's own counters."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from hil.lab.measurement import Measurement
from hil.model import Bound, Prediction, compare, names, predict
from hil.model.profiles import PROFILES
from hil.model.race import STEP_IN_GUEST, STEP_WINDOW, STEPS, kick_at
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


KICK_OPS = ("kicks", "ipi-race")


def _row(label: str, predicted: Bound, measured: int) -> ReasonRow:
    return ReasonRow(label, show(predicted), measured, predicted.contains(measured))


def _kick_case(scenario: Scenario, m: Measurement, profile: str, op: str, count: int) -> CaseResult:
    """Kicks of a spinning vCPU (I/O-thread MSIs or vCPU 1's IPIs): the model's kick_at for
    where each kick landed (the series' tracepoints tell), against the exits of the op, the
    interrupts the guest took and the kicks it saw late (lost until something else exited)."""
    name = f"{op}x{count}"
    got = m.op(op)
    if got is None or got.count is None:
        return CaseResult(name, Verdict.ERROR, f"the probe did not report running {op}")
    p = PROFILES[profile]
    rep, trace = got.reported, m.kick_trace
    sent = int(rep.get("sent", count))
    if op == "kicks":
        msis = trace.get("io_thread_msis", [])
        if len(msis) != count or any(r <= 0 for r in msis):
            return CaseResult(name, Verdict.ERROR, f"hil sent {len(msis)} MSIs of {count} "
                              f"(KVM_SIGNAL_MSI results {msis[:8]})")
    irqs, late = int(rep.get("irqs", -1)), int(rep.get("late", 0))
    exits = got.exits
    nmi, msr, intr = (names.reason(m.arch, r) for r in ("NMI", "MSR_WRITE", "EXTINT"))
    rows = [_row("kicks accepted by vCPU 0's APIC", Bound.exactly(sent), trace.get("accepted", -1)),
            _row(f"{msr} exits (the handler's EOI, one per interrupt taken)", Bound.exactly(irqs), exits.get(msr, 0))]
    # exits that could deliver a lost kick's interrupt (irq-window exits come only with IF=0, in the handler)
    unrelated = sum(n for r, n in exits.items() if r not in (nmi, msr, names.reason(m.arch, "IRQ_WINDOW")))
    if p.kick == "ipi":
        # stock: a reschedule IPI per kick found in guest mode; none is ever lost
        rows += [_row("late kicks", Bound.exactly(0), late), _row("interrupts taken", Bound.exactly(sent), irqs),
                 _row(f"{intr} exits", Bound(0, None) if op == "ipi-race" else Bound(sent, None), exits.get(intr, 0))]
    else:
        landed = trace.get("landed")
        if landed is None:
            return CaseResult(name, Verdict.ERROR, "no kvm_dedicated_* tracepoints: L1 does not run the "
                              "dedicated-cpu series' modules")
        window = trace.get("window", 0)     # kicks landing in the entry path past the request check
        in_guest, in_window = kick_at(p, STEP_IN_GUEST), kick_at(p, STEP_WINDOW, later_exits=False)
        # model: an NMI taken in the guest is one exit (kick_at: in-guest -> NMI); in the window
        # v2's prevent-run adds one (PREEMPT -> 'nmi' on SVM: its self-NMI lands in the guest)
        exits_per_nmi = 1 if in_guest.exit_reason == "NMI" else 0
        self_per_window = 1 if in_window.exit_reason == "PREEMPT" else 0
        # v1: a kick lost in the window leaves vcpu->mode at EXITING, and the seed's kick does not
        # signal a vCPU it finds EXITING: those kicks (step in-guest-stuck) are lost as well
        stuck = kick_at(p, STEPS.index("in-guest-stuck"), later_exits=False)
        # a window landing whose request this entry had already taken is late news, not a loss
        lost_low = 0 if in_window.seen else trace.get("window_pending", 0)
        lost_high = lost_low + (0 if stuck.seen else trace.get("found", {}).get("exiting/no-nmi", 0))
        self_nmis = sum(r.get("self_nmis", 0) for r in landed.values())
        rows += [
            # the tracepoint hists span the whole L2 run, so this row does too: every kick
            # counts, not only the op's (QEMU kicks vCPU 0 now and then on its own)
            _row(f"{nmi} exits, whole run, all vCPUs (model: one per NMI taken in the guest)",
                 Bound.exactly(exits_per_nmi * trace.get("guest_nmis_all_vcpus", 0)), m.exits_all.get(nmi, 0)),
            _row("prevent-run NMIs (model: one per kick landing in the window)",
                 Bound.exactly(self_per_window * window), self_nmis),
            # a lost kick shows as late unless an unrelated exit delivered it first
            _row("late kicks (model: lost = landed in the window, or found the vCPU stuck at EXITING)",
                 Bound(max(0, lost_low - unrelated), lost_high), late),
            _row("interrupts taken", Bound(sent - late, sent), irqs),
        ]
        # a kick is an NMI now: the stock path (a reschedule IPI to a vCPU found in guest mode)
        # never runs for vCPU 0, and each external-interrupt exit has a host interrupt of its
        # own on that CPU (the tick, RCU or the scheduler's IPIs, KVM's immediate exits)
        rows.append(_row("kicks of vCPU 0 by reschedule IPI (kvm_stock_kick, whole run)", Bound.exactly(0),
                         trace.get("stock_kicks", {}).get("in-guest", 0)))
        host = _host_interrupts(scenario, trace, op)
        if host is not None:
            rows.append(_row(f"{intr} exits (model: none from kicks; at most the host interrupts on that CPU)",
                             Bound(0, sum(host.values())), exits.get(intr, 0)))
    bad = [r for r in rows if not r.ok]
    extra = {"kick_trace": trace, "reported": rep, "unrelated_exits": unrelated}
    # the stress must have hit what it is about: prevent-run at work (v2), a kick really lost (v1)
    hits = trace.get("window", 0) if p.prevent_run else trace.get("window_pending", 0)
    if p.kick != "ipi" and op == "ipi-race" and not bad and hits == 0:
        return CaseResult(name, Verdict.ERROR, "no kick landed in the window" +
                          ("" if p.prevent_run else " with its request still pending") +
                          ", so the stress shows nothing: more kicks (count)", rows, extra)
    detail = "; ".join(f"{r.reason}: predicted {r.predicted}, measured {r.measured}" for r in bad)
    return CaseResult(name, Verdict.FAIL if bad else Verdict.PASS, detail, rows, extra)


def _host_interrupts(scenario: Scenario, trace: dict[str, Any], op: str) -> dict[str, int] | None:
    """Host interrupts by kind on the L1 CPU vCPU 0 is pinned to, while the op ran (None: not
    pinned, or not measured). KVM's immediate exits, keyed by vCPU, are not host interrupts."""
    per_op = trace.get("host_interrupts_per_op", {}).get(op)
    if not per_op or not scenario.topology.l2.pin:
        return None
    cpu = str(scenario.topology.l2.pin[0])
    return {kind: cpus.get(cpu, 0) for kind, cpus in per_op.items() if kind != "kvm_immediate_exit_by_vcpu"}


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
        cases += [_kick_case(scenario, m, profile, o.op, o.count) if o.op in KICK_OPS
                  else _probe_case(scenario, m, profile, o.op, o.count, judged) for o in scenario.workload.ops]
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
