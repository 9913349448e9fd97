"""Judging one run: the prediction (made before the lab ran) held against the measurement.
One case per probe op, the probe's glue, the foreign kernel's whole run, and the cross-check
of KVM's own counters. The verdict only compares: every bound comes from the model."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hil.measurement import Measurement
from hil.model import Bound, Prediction, compare, names
from hil.model.profiles import PROFILES
from hil.model.race import KickBounds, KickLandings, kick_bounds
from hil.scenario import Scenario
from hil.model.cost import HostCosts
from hil.model.latency import Calibrated
from hil.scenario.prediction import (OpPrediction, OpTiming, ScenarioPrediction, predict_latency, predict_op_reported,
                                     run_calibration)


class Verdict(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIP = "SKIP"

    @staticmethod
    def worst(verdicts: list["Verdict"]) -> "Verdict":
        order = [Verdict.ERROR, Verdict.FAIL, Verdict.SKIP, Verdict.PASS]
        return next((v for v in order if v in verdicts), Verdict.PASS)


def show(bound: Bound) -> str:
    if bound.high is not None and bound.low == bound.high:
        return str(bound.low)
    return f"{bound.low}..{'inf' if bound.high is None else bound.high}"


@dataclass
class ReasonRow:
    reason: str
    predicted: Bound
    measured: int
    ok: bool
    judged: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "predicted": {"low": self.predicted.low, "high": self.predicted.high},
                "predicted_text": show(self.predicted), "measured": self.measured, "ok": self.ok,
                "judged": self.judged}


@dataclass
class CaseResult:
    name: str
    verdict: Verdict
    detail: str = ""
    rows: list[ReasonRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict.value, "detail": self.detail,
                "rows": [r.to_dict() for r in self.rows], "extra": self.extra}


EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.ERROR: 2, Verdict.SKIP: 3}


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
        return EXIT_CODES[self.verdict]

    def case(self, name: str) -> CaseResult | None:
        return next((c for c in self.cases if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "cases"}
        d["verdict"] = self.verdict.value
        d["cases"] = [c.to_dict() for c in self.cases]
        return d


def compare_exits(predicted: Prediction | dict[str, Bound], measured: dict[str, int],
                  judged: set[str] | None) -> list[ReasonRow]:
    """The model's comparison, with reasons outside `judged` reported but not held against."""
    pred = predicted if isinstance(predicted, Prediction) else Prediction("expect", "", exits=dict(predicted))
    return [ReasonRow(r.reason, r.predicted, r.measured, r.ok or (judged is not None and r.reason not in judged),
                      judged is None or r.reason in judged) for r in compare(pred, measured)]


def _mismatches(rows: list[ReasonRow], verb: str = "predicted") -> str:
    return "; ".join(f"{r.reason}: {verb} {show(r.predicted)}, measured {r.measured}" for r in rows if not r.ok)


def _reported(m: Measurement, op: OpPrediction) -> tuple[Any, CaseResult | None]:
    """The op's measurement, or the ERROR case when the probe did not run it as asked."""
    got = m.op(op.op)
    if got is None or got.count is None:
        return None, CaseResult(op.op, Verdict.ERROR, f"the probe did not report running {op.op}")
    if got.count != op.count:
        return None, CaseResult(op.op, Verdict.ERROR, f"the probe ran {op.op} {got.count} times, asked for {op.count}")
    return got, None


MAX_SAMPLES = 4096      # guest/devconf.h DEV_MAX_SAMPLES: later interrupts are counted, not timed


def _row(label: str, expected: Bound, measured: int) -> ReasonRow:
    return ReasonRow(label, expected, measured, expected.contains(measured))


def _device_rows(m: Measurement, op: OpPrediction, got: Any) -> list[ReasonRow]:
    """What a device op must show besides its exits: every interrupt taken (and timed),
    every frame through, in order, and the device's interrupts as L1 saw them."""
    n, rep = op.count, got.reported
    exact = Bound.exactly
    rows = []
    if op.op in ("dev-msi", "dev-dma", "net-tx"):
        rows.append(_row("interrupts taken by the guest", exact(n), int(rep.get("irqs", -1))))
        rows.append(_row("latency samples", exact(min(n, MAX_SAMPLES)), len(got.samples.get("lat", []))))
    if op.op in ("dev-msi", "dev-dma"):
        host = m.devices.get("vfio-pci", {}).get("host", {}).get("host_irqs")
        edu_irqs = sum(int(o.reported.get("irqs", 0)) for o in m.ops if o.op in ("dev-msi", "dev-dma"))
        p = PROFILES.get(op.exits.profile)
        if host is not None and p is not None and p.irte_retarget and p.host_isolated:
            # 0010: the IOMMU sends each edu MSI to vCPU 0's CPU with the guest's vector: no vfio handler runs
            rows.append(_row("vfio interrupts in L1 (all edu ops; IRTE retargeted: none)", exact(0),
                             int(host.get("total", -1))))
        elif host is not None:
            # every edu MSI is one vfio interrupt in L1 (on some L1 CPU) over the whole run
            rows.append(_row("vfio interrupts in L1 (all edu ops)", exact(edu_irqs), int(host.get("total", -1))))
    if op.op == "net-rx":
        sender = m.frames.get("frame-sender", {})
        rows.append(_row("frames sent into the tap", exact(n), int(sender.get("sent", -1))))
        rows.append(_row("frames received by the guest", exact(n), int(rep.get("frames", -1))))
        rows.append(_row("frames received in order (1: all)", exact(1), int(rep.get("in_order", -1))))
        rows.append(_row("receive interrupts", Bound(1, n), int(rep.get("irqs", -1))))
    if op.op == "net-tx":
        counter = m.frames.get("frame-counter", {})
        rows.append(_row("frames on the tap", exact(n), int(counter.get("frames", -1))))
        rows.append(_row("frames on the tap in order", exact(n), int(counter.get("in_order", -1))))
    return rows


def _with_host_requests(pred: Prediction, m: Measurement) -> Prediction:
    """On an isolated CPU (profile host_isolated) a host request is an NMI exit, the model's
    host-ipi event (assumption isolated-cpu-quiet); the series traces each one: a kick NMI that
    landed in the guest or host work re-raised at a doorbell exit. Those the whole run traced
    may fall in this code (no NMI of the op's own), so the op's nmi bound grows by them."""
    p = PROFILES.get(pred.profile)
    if p is None or not p.host_isolated or not m.kick_trace.series_traced:
        return pred
    nmi = names.reason(pred.arch, "NMI")
    traced = m.kick_trace.guest_nmis_all_vcpus + m.kick_trace.deferred
    exits = dict(pred.exits)
    exits[nmi] = exits.get(nmi, Bound(0, 0)) + Bound(0, traced)
    if "direct-timer-host-request" in pred.assumptions:
        # that exit gives the guest's timer back to KVM's hrtimer: due before the next direct
        # entry, it is injected virtually once and its EOI traps
        msr = names.reason(pred.arch, "MSR_WRITE")
        exits[msr] = exits.get(msr, Bound(0, 0)) + Bound(0, traced)
    return replace(pred, exits=exits)


def _direct_rows(m: Measurement, op: OpPrediction, got: Any) -> list[ReasonRow]:
    """A device op under direct delivery: the edu's MSI has its remapped IRTE pointed at vCPU 0's
    CPU with the guest's vector (0010 kvm_dedicated_retarget, every IRTE write done), so none is
    relayed; without 0010 (irte_retarget off) each is relayed to that CPU as a physical IPI with
    the guest's vector (0006 kvm_dedicated_relay). One the host took in root mode (it raced a host
    request's exit) is raised again at the next direct entry (0008), at most one per host request
    the series traced."""
    p = PROFILES.get(op.exits.profile)
    if p is None or not (p.direct_msi and p.host_isolated) or op.op not in ("dev-msi", "dev-dma"):
        return []
    irqs = int(got.reported.get("irqs", -1))
    trace = m.kick_trace
    requests = trace.guest_nmis_all_vcpus + trace.deferred
    caught = _row("MSIs taken in root mode, raised again (kvm_dedicated_forward; <= host requests)",
                  Bound(0, requests), trace.forwards)
    if p.irte_retarget:
        return [_row("edu MSI IRTEs pointed at vCPU 0's CPU (kvm_dedicated_retarget, whole run)", Bound(1, None),
                     trace.retargets),
                _row("IRTE retargets refused (kvm_dedicated_retarget ret != 0)", Bound.exactly(0),
                     trace.retarget_failures),
                _row("MSIs relayed as physical IPIs (kvm_dedicated_relay, vCPU 0, whole run)", Bound.exactly(0),
                     trace.relays), caught]
    return [_row("MSIs relayed as physical IPIs (kvm_dedicated_relay, vCPU 0, whole run)", Bound.exactly(irqs),
                 trace.relays), caught]


def _exits_case(m: Measurement, op: OpPrediction, judged: set[str] | None) -> CaseResult:
    got, error = _reported(m, op)
    if error:
        return error
    exits = op.exits
    if op.spec.per:
        # events per interrupt taken or notify made, known only now (still the model's bounds)
        exits = predict_op_reported(op.op, got.reported, exits.profile, exits.arch)
    exits = _with_host_requests(exits, m)
    rows = compare_exits(exits, got.exits, judged)
    if op.spec.device:
        rows += _device_rows(m, op, got) + _direct_rows(m, op, got)
    bad = any(not r.ok for r in rows)
    extra = {"count": op.count, "predicted_counters": {k: show(v) for k, v in exits.counters.items()},
             "assumptions": exits.assumptions, "tsc": got.tsc, "reported": got.reported}
    if got.latency:
        extra["latency_ns"] = {k: asdict(v) for k, v in got.latency.items()}
    if op.spec.device:
        extra["devices"] = m.devices
        extra["frames"] = {k: {f: v for f, v in r.items() if f != "gaps_ns"} for k, r in m.frames.items()}
    return CaseResult(op.op, Verdict.FAIL if bad else Verdict.PASS, _mismatches(rows), rows, extra)


def _kick_case(scenario: Scenario, pred: ScenarioPrediction, m: Measurement, op: OpPrediction) -> CaseResult:
    """Kicks of a spinning vCPU: the model's bounds for where the kicks landed (the series'
    tracepoints tell) against the op's exits, the interrupts the guest took and the late ones."""
    got, error = _reported(m, op)
    if error:
        return error
    rep, trace, arch = got.reported, m.kick_trace, m.arch
    sent = int(rep.get("sent", op.count))
    io_thread = op.spec.stimulus == "io-thread-msi"
    if io_thread:
        msis = trace.io_thread_msis
        if len(msis) != op.count or any(r <= 0 for r in msis):
            return CaseResult(op.op, Verdict.ERROR, f"hil sent {len(msis)} MSIs of {op.count} "
                              f"(KVM_SIGNAL_MSI results {msis[:8]})")
    if pred.profile.kick != "ipi" and not trace.series_traced:
        return CaseResult(op.op, Verdict.ERROR, "no kvm_dedicated_* tracepoints: L1 does not run the "
                          "dedicated-cpu series' modules")
    if not isinstance(rep.get("irqs"), int) or rep["irqs"] < 0:
        return CaseResult(op.op, Verdict.ERROR, f"the probe did not report the interrupts {op.op} took")
    irqs, late = rep["irqs"], max(0, int(rep.get("late", 0)))
    # cli-window: the guest held IF=0 in windows and its handler told where each interrupt landed
    if_windows = "at_sti" in op.spec.results
    if if_windows and not all(isinstance(rep.get(f), int) for f in ("masked", "at_sti")):
        return CaseResult(op.op, Verdict.ERROR, f"the probe did not report where {op.op}'s interrupts landed")
    nmi, msr, intr, window = (names.reason(arch, r) for r in ("NMI", "MSR_WRITE", "EXTINT", "IRQ_WINDOW"))
    # exits that could deliver a lost kick's interrupt (irq-window exits come only with IF=0, in the handler)
    unrelated = sum(n for r, n in got.exits.items() if r not in (nmi, msr, window))
    pin = scenario.topology.l2.pin
    host = trace.host_interrupts(op.op, pin[0]) if pin else None
    bounds: KickBounds = kick_bounds(pred.profile, KickLandings(
        sent=sent, taken=irqs, late=late, window=trace.window, window_pending=trace.window_pending,
        found_exiting_no_nmi=trace.found_count("exiting", False),
        guest_nmis_all_vcpus=trace.guest_nmis_all_vcpus, unrelated_exits=unrelated,
        host_interrupts=sum(host.values()) if host is not None else None, io_thread=io_thread,
        relayed=trace.relays, forwarded=trace.forwards, deferred=trace.deferred, if_windows=if_windows))
    measured = {"accepted": trace.accepted, "eoi_exits": got.exits.get(msr, 0), "late": late, "taken": irqs,
                "ext_int_exits": got.exits.get(intr, 0), "nmi_exits_all": m.exits_all.get(nmi, 0),
                "prevent_run_nmis": trace.self_nmis, "stock_kicks": trace.stock_kicks.get("in-guest", 0),
                "relays": trace.relays, "forwards": trace.forwards, "taken_masked": int(rep.get("masked", 0)),
                "window_exits": got.exits.get(window, 0)}
    rows = [ReasonRow(c.label, c.bound, measured[c.name], c.bound.contains(measured[c.name]))
            for c in bounds.checks]
    bad = any(not r.ok for r in rows)
    extra = {"count": op.count, "kick_trace": asdict(trace), "reported": rep, "unrelated_exits": unrelated}
    timed = [r for r in rows if not r.ok and r.reason.startswith(("late kicks", "interrupts taken"))]
    busy = _load_exceeded(m) if timed else None
    if busy:            # a kick counts as late by the clock: on an overloaded host that says nothing of the kernel
        return CaseResult(op.op, Verdict.ERROR, f"inconclusive: {_mismatches(timed)} while {busy}", rows, extra)
    if bounds.evidence and not bad and getattr(trace, bounds.evidence) == 0:
        return CaseResult(op.op, Verdict.ERROR, "no kick landed in the window" +
                          (" with its request still pending" if bounds.evidence == "window_pending" else "") +
                          ", so the stress shows nothing: more kicks (count)", rows, extra)
    if if_windows and not bad and rep["at_sti"] == 0:
        return CaseResult(op.op, Verdict.ERROR, "no interrupt was pending across a cli window (none taken at a "
                          "sti), so the run shows nothing of IF=0: more MSIs (count)", rows, extra)
    return CaseResult(op.op, Verdict.FAIL if bad else Verdict.PASS, _mismatches(rows), rows, extra)


def timings(m: Measurement) -> list[OpTiming]:
    """Each op's cycles as the probe timed them: per iteration (simple ops) or per interrupt."""
    return [OpTiming(o.op, tuple(o.samples.get("iter") or o.samples.get("lat") or ()), o.reported) for o in m.ops]


#: other work's share of L0's CPU time during the L2 run above which a latency outside its band
#: says nothing of the kernel: the lab's L1 QEMU keeps both CPUs of the 2-CPU L0 busy under TCG,
#: so any other runnable thread takes its CPU time from the vCPU threads being timed; 10% of the
#: host is ~100 ms of stolen CPU per second, the size of the worst stalls seen beside other work
OTHER_CPU_MAX = 0.10


def _load_exceeded(m: Measurement) -> str | None:
    """Why a clock reading of this run says nothing of the kernel: L0's load exceeded its CPUs."""
    load = m.provenance.get("host_load") or {}
    if max(load.get("before", 0), load.get("after", 0)) > (load.get("nproc") or 1):
        return (f"the host's load was {load.get('before')}..{load.get('after')} on {load.get('nproc')} CPUs "
                "(run one lab at a time, on a quiet host)")
    return None


def _overloaded(m: Measurement) -> str | None:
    """As _load_exceeded, or other work took more than OTHER_CPU_MAX of L0's CPU time."""
    if busy := _load_exceeded(m):
        return busy
    load = m.provenance.get("host_load") or {}
    if load.get("other_cpu", 0) > OTHER_CPU_MAX:
        return (f"work other than the lab took {load['other_cpu']:.0%} of the host's CPU time during the run "
                f"(over {OTHER_CPU_MAX:.0%}: run one lab at a time, on a quiet host)")
    return None


def run_costs(pred: ScenarioPrediction, m: Measurement) -> tuple[Calibrated | None, str]:
    """The costs latency is predicted with: the scenario's host profile, with every cost this
    run measured itself (its calibration ops) taken from the run; and where they came from."""
    own = run_calibration(timings(m), pred.profile.name, pred.arch, (pred.host.costs if pred.host else HostCosts()))
    if own is None:
        return pred.host, pred.host_source
    if pred.host is None:
        return own, "this run"
    return pred.host.overlaid(own), f"{pred.host_source}, with this run's {', '.join(own.measured)}"


def _latency_case(pred: ScenarioPrediction, m: Measurement, op: OpPrediction) -> CaseResult | None:
    """The op's measured p50 and p99 (request -> handler entry) within the model's band,
    predicted from this lab's calibrated costs. None: the op has no latency samples."""
    got = m.op(op.op)
    stats = got.latency.get("lat") if got else None
    if got is None or stats is None:
        return None
    name = f"{op.op} latency"
    measured = [ReasonRow("p50 ns", Bound(0, None), round(stats.p50), True, judged=False),
                ReasonRow("p99 ns", Bound(0, None), round(stats.p99), True, judged=False)]
    if not op.spec.latency_path:
        return CaseResult(name, Verdict.PASS, f"reported, not judged: {op.spec.latency_unpriced}", measured)
    costs, source = run_costs(pred, m)
    missing = [c for c in ("exit_entry",) + op.spec.calibrates if costs is None or c not in costs.measured]
    if missing:
        return CaseResult(name, Verdict.PASS, f"reported, not judged: {', '.join(missing)} not calibrated on this "
                          "lab (run `hil calibrate`, or give --host-profile FILE)", measured)
    accel = (m.provenance.get("accel") or {}).get("accel")
    if pred.host is not None and pred.host_provenance.get("accel") not in (None, accel):
        return CaseResult(name, Verdict.PASS, f"reported, not judged: {pred.host_source} was calibrated under "
                          f"{pred.host_provenance.get('accel')}, this run ran under {accel}", measured)
    tsc_khz = int(got.reported.get("tsc_khz") or 0)
    if tsc_khz <= 0:
        return CaseResult(name, Verdict.ERROR, f"the probe did not report the TSC rate of {op.op}")
    band = predict_latency(op.op, pred.profile.name, pred.arch, costs, tsc_khz)
    assert band is not None
    ns = band.scaled(1e6 / tsc_khz)
    p50 = Bound(int(ns["p50_low"]), int(ns["p50_high"]))
    p99 = Bound(int(ns["p50_low"]), int(ns["p99_high"]))
    rows = [_row(f"p50 ns (model {ns['nominal'] / 1000:.1f} us)", p50, round(stats.p50)),
            _row("p99 ns", p99, round(stats.p99))]
    extra = {"op": op.op, "n": stats.n, "tsc_khz": tsc_khz, "costs_from": source,
             "costs": costs.to_mapping(), "band_cycles": {"nominal": band.nominal, "p50_low": band.p50_low,
                                                          "p50_high": band.p50_high, "p99_high": band.p99_high},
             "band_ns": ns, "reasons": dict(band.reasons),
             "predicted_ns": {"lat": {"low": ns["p50_low"], "high": ns["p99_high"], "nominal": ns["nominal"]}}}
    bad = [r for r in rows if not r.ok]
    busy = _overloaded(m) if bad else None
    if busy:        # a latency is a clock reading: on an overloaded host it says nothing of the kernel
        return CaseResult(name, Verdict.ERROR, f"inconclusive: {_mismatches(bad)} while {busy}", rows, extra)
    return CaseResult(name, Verdict.FAIL if bad else Verdict.PASS, _mismatches(bad), rows, extra)


def _glue_case(m: Measurement, ambient: Prediction) -> CaseResult:
    """Window exits outside every op's code may only be ambient noise the profile allows (on an
    isolated CPU: the host requests the series traced, each an NMI exit)."""
    rows = compare_exits(_with_host_requests(ambient, m), m.exits_outside_ops, None)
    return CaseResult("probe-glue", Verdict.FAIL if any(not r.ok for r in rows) else Verdict.PASS,
                      "; ".join(f"{r.reason}: {r.measured} exits in probe glue code" for r in rows if not r.ok), rows)


def _whole_run_case(m: Measurement, expected: dict[str, Bound]) -> CaseResult:
    if not expected:
        return CaseResult("whole-run", Verdict.SKIP, "no bounds given (expect.exits): nothing to judge")
    rows = compare_exits(expected, m.exits_all, set(expected))
    return CaseResult("whole-run", Verdict.FAIL if any(not r.ok for r in rows) else Verdict.PASS,
                      _mismatches(rows, "expected"), rows)


KUT_SKIP = 77      # kvm-unit-tests' skip status (scripts/runtime.bash)


def _kut_cases(m: Measurement, expected: dict[str, Bound]) -> list[CaseResult]:
    """kvm-unit-tests' own verdict (its exit status), each FAIL line as a case of its own, and
    the whole run's exits beside them (judged only where expect.exits gives bounds). KVM's
    counters went with L2's QEMU, so there is no counters cross-check."""
    rep = m.payload_report
    status = int(rep["status"])
    lines = rep.get("lines", [])
    tally = {v: sum(1 for line in lines if line["verdict"] == v) for v in ("PASS", "FAIL", "SKIP", "XFAIL", "XPASS")}
    counts = ", ".join(f"{n} {v}" for v, n in tally.items() if n) or "no report lines"
    verdict = Verdict.PASS if status == 0 else Verdict.SKIP if status == KUT_SKIP else Verdict.FAIL
    detail = (f"kvm-unit-tests exit status {status} ({counts}"
              + (f"; SUMMARY: {rep['summary']}" if rep.get("summary") else "") + ")"
              + ("; KVM's counters ended with L2's QEMU: no counters cross-check" if not m.counters else ""))
    cases = [CaseResult("kut-status", verdict, detail, extra={"status": status, "lines": lines, **tally,
                                                              "cycles": rep.get("cycles", {})})]
    cases += [CaseResult(f"kut FAIL: {line['text'][:80]}", Verdict.FAIL, line["text"])
              for line in lines if line["verdict"] == "FAIL"]
    if expected:
        cases.append(_whole_run_case(m, expected))
    else:   # reported, not judged: nothing bounds a foreign test's exits unless the scenario says so
        cases.append(CaseResult("whole-run", Verdict.PASS, "exits reported, not judged (no expect.exits)",
                                [ReasonRow(r, Bound(0, None), n, True, judged=False)
                                 for r, n in sorted(m.exits_all.items())]))
    return cases


COUNTER_CHECKS = (("exits", None), ("io_exits", "IO"), ("halt_exits", "HLT"))


def _counters_case(m: Measurement) -> CaseResult:
    """KVM's own counters against its kvm_exit tracepoint over the whole L2 run (the agent
    pauses L2 before reading either side, so both describe the same instant)."""
    missing = [c for c, _ in COUNTER_CHECKS if c not in m.counters]
    if missing:
        return CaseResult("kvm-counters", Verdict.ERROR, f"KVM's stats lack {', '.join(missing)} "
                          f"(have: {', '.join(sorted(m.counters)) or 'none'})")
    rows = []
    for counter, abstract in COUNTER_CHECKS:
        traced = sum(m.exits_all.values()) if abstract is None else m.exits_all.get(names.reason(m.arch, abstract), 0)
        rows.append(ReasonRow(f"{counter} == kvm_exit[{abstract.lower() if abstract else 'all'}]",
                              Bound.exactly(m.counters[counter]), traced, m.counters[counter] == traced))
    return CaseResult("kvm-counters", Verdict.FAIL if any(not r.ok for r in rows) else Verdict.PASS,
                      "; ".join(f"{r.reason}: counter {r.predicted.low}, tracepoint {r.measured}"
                                for r in rows if not r.ok), rows)


def _health_case(h: dict[str, Any]) -> CaseResult:
    """L1 after a direct-mode run: the agent answers, the console shows no RCU stall, CSD-lock
    wait or leaked vector, and the leak detector counted nothing."""
    rows = [ReasonRow("L1 agent answers", Bound.exactly(1), int(bool(h.get("agent_answers"))),
                      bool(h.get("agent_answers"))),
            ReasonRow("L1 console: stalls, CSD-lock waits, leaked vectors", Bound.exactly(0),
                      len(h.get("console_problems", [])), not h.get("console_problems")),
            ReasonRow("kvm_dedicated_leak hits", Bound.exactly(0), int(h.get("leaks", 0)), not h.get("leaks"))]
    if h.get("l1_isr") is not None:
        rows.append(ReasonRow("vectors in service in L1's APIC of the direct CPU", Bound.exactly(0),
                              len(h["l1_isr"]), not h["l1_isr"]))
    bad = [r for r in rows if not r.ok]
    detail = "; ".join(f"{r.reason}: {r.measured}" for r in bad)
    if h.get("console_problems"):
        detail += " (" + " | ".join(h["console_problems"][:3]) + ")"
    if h.get("agent_error"):
        detail += f" (agent: {h['agent_error']})"
    kept = {k: n for k, n in (h.get("tick") or {}).items() if k != "stopped"}
    if kept:        # told, not judged: with the tick running, entries find the host's timer armed
        detail += ("; " if detail else "") + "L1's tick could not stop on the direct CPU (tick_stop): " + ", ".join(
            f"{k} {n}x" for k, n in sorted(kept.items()))
    return CaseResult("l1-health", Verdict.FAIL if bad else Verdict.PASS, detail, rows)


def judge(scenario: Scenario, pred: ScenarioPrediction, m: Measurement) -> RunResult:
    if m.arch != pred.arch:
        return error_result(scenario.name, f"predicted for {pred.arch}, but L1 has {m.arch}",
                            logs=m.logs, provenance=m.provenance)
    judged = None if scenario.expect.reasons == "all" else set(scenario.expect.reasons)
    cases: list[CaseResult] = []
    if scenario.workload.kind == "probe":
        cases += [_kick_case(scenario, pred, m, op) if op.spec.judge == "kicks" else _exits_case(m, op, judged)
                  for op in pred.ops]
        cases += [c for c in (_latency_case(pred, m, op) for op in pred.ops if op.spec.device) if c is not None]
        assert pred.ambient is not None
        cases.append(_glue_case(m, pred.ambient))
    elif m.payload_report.get("status") is not None:     # kvm-unit-tests ended itself with its status
        cases += _kut_cases(m, pred.expected_exits)
    else:
        cases.append(_whole_run_case(m, pred.expected_exits))
    if m.counters or m.payload_report.get("status") is None:
        cases.append(_counters_case(m))
    if m.l1_health is not None:
        cases.append(_health_case(m.l1_health))
    return RunResult(scenario.name, Verdict.worst([c.verdict for c in cases]), cases, pred.profile.name, m.arch,
                     measurement=m.to_dict(), provenance=m.provenance, logs=m.logs)


def error_result(scenario_name: str, error: str, logs: dict[str, str] | None = None,
                 provenance: dict[str, Any] | None = None) -> RunResult:
    return RunResult(scenario_name, Verdict.ERROR, [CaseResult("lab", Verdict.ERROR, error)], error=error,
                     logs=logs or {}, provenance=provenance or {})


def skip_result(scenario_name: str, reason: str) -> RunResult:
    return RunResult(scenario_name, Verdict.SKIP, [CaseResult("lab", Verdict.SKIP, reason)], error=reason)
