"""What the model predicts for a scenario, computed before anything boots: one prediction
per probe op (its model events, hil/scenario/probe_ops.py), the ambient noise the probe's
glue may show, or the bounds a foreign kernel's scenario states. A profile the model cannot
answer for the lab's architecture is a configuration error here, not a crash after the run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hil.model import Bound, ModelError, Operation, Prediction, predict
from hil.model.cost import HostCosts
from hil.model.latency import Calibrated, CalibrationOp, LatencyBand, calibrate, latency_band
from hil.model.profiles import PROFILES, Profile
from hil.paths import user_host_profile
from hil.scenario.config import Scenario
from hil.scenario.probe_ops import ProbeOpSpec, spec


@dataclass(frozen=True)
class OpPrediction:
    op: str
    count: int
    spec: ProbeOpSpec
    exits: Prediction          # the op's exits per reason (kick ops: the per-kick events, for reference)


@dataclass(frozen=True)
class ScenarioPrediction:
    profile: Profile
    arch: str
    ops: tuple[OpPrediction, ...] = ()
    ambient: Prediction | None = None               # probe glue: only noise the profile allows
    expected_exits: dict[str, Bound] = field(default_factory=dict)   # foreign kernel: the scenario's bounds
    # the cost model's host profile the scenario named (None: none), and where it came from
    host: Calibrated | None = None
    host_source: str = ""
    host_provenance: dict = field(default_factory=dict)

    def op(self, name: str) -> OpPrediction | None:
        return next((o for o in self.ops if o.op == name), None)


def resolve_profile(profile: str, arch: str) -> str:
    return f"stock-{arch}" if profile == "auto" else profile


def model_operations(op: str, count: int) -> list[Operation]:
    s = spec(op)
    return ([Operation(event, count, params) for event, params in s.events]
            + [Operation(event, 1 if count else 0, params) for event, params in s.once])


def predict_op(op: str, count: int, profile: str, arch: str) -> Prediction:
    return predict(model_operations(op, count), profile, arch, apic="x2apic")


def predict_op_reported(op: str, reported: dict[str, int], profile: str, arch: str) -> Prediction:
    """The op's prediction with each event counted by the probe's result field its spec names
    (ProbeOpSpec.per), the others by the op's count: for what only the run can tell."""
    s = spec(op)
    per = dict(s.per)
    ops = [Operation(event, max(0, int(reported.get(per.get(event, "count"), 0))), params)
           for event, params in s.events]
    ops += [Operation(event, 1 if reported.get("count") else 0, params) for event, params in s.once]
    return predict(ops, profile, arch, apic="x2apic")


def predict_scenario(scenario: Scenario, arch: str) -> ScenarioPrediction:
    """Every prediction the verdict will need, for the architecture L1 will have.
    Raises the scenario's ConfigError at `profile` when the model has no answer."""
    name = resolve_profile(scenario.profile, arch)
    try:
        profile = PROFILES[name]
        if arch not in profile.arches:
            raise ModelError(f"profile {name} models {', '.join(profile.arches)} only, and this lab's "
                             f"L1 has {arch}")
        if scenario.workload.kind != "probe":
            return ScenarioPrediction(profile, arch, expected_exits={
                r: Bound(lo, hi) for r, (lo, hi) in scenario.expect.exits.items()})
        ops = tuple(OpPrediction(o.op, o.count, spec(o.op), predict_op(o.op, o.count, name, arch))
                    for o in scenario.workload.ops)
        host, provenance, source = None, {}, scenario.host_profile or ""
        if not source and any(o.spec.latency_path for o in ops) and user_host_profile().is_file():
            source = str(user_host_profile())        # this machine's, from an earlier hil calibrate
        if source:
            from hil.scenario.host_profile import load_host_profile
            host, provenance = load_host_profile(Path(source))
        return ScenarioPrediction(profile, arch, ops, ambient=predict([], name, arch), host=host,
                                  host_source=source, host_provenance=provenance)
    except (KeyError, ModelError) as e:
        raise scenario.error("profile", f"the model cannot answer for {name!r} on {arch}: "
                             f"{e.args[0] if e.args else e}") from e


@dataclass(frozen=True)
class OpTiming:
    """What a run measured of one op, for the calibration: the probe's per-iteration (or per
    interrupt) cycles and its own op line."""
    op: str
    samples: tuple[int, ...]
    reported: dict


def calibration_ops(timings: list[OpTiming], with_judged: bool = False) -> list[CalibrationOp]:
    """The run's ops that measure a host cost, in the order the model needs them (a later
    op's path holds the earlier ops' costs). An op whose latency the verdict judges measures
    nothing unless asked (hil calibrate): a run does not predict an op from itself."""
    out = []
    for t in timings:
        s = spec(t.op)
        if not s.calibrates or not t.samples or (s.latency_path and not with_judged):
            continue
        fixed = 0
        if t.op == "hlt":      # each iteration waits the timer's period: no mechanism's cost
            fixed = int(t.reported.get("timer_us", 0)) * int(t.reported.get("tsc_khz", 0)) // 1000
        out.append(CalibrationOp(t.op, s.calibrates, s.latency_path or s.events, t.samples, fixed))
    order = ("exit_entry", "userspace", "halt_wakeup", "ipi")
    return sorted(out, key=lambda c: order.index(c.costs[0]) if c.costs[0] in order else len(order))


def run_calibration(timings: list[OpTiming], profile: str, arch: str, base: HostCosts,
                    with_judged: bool = False) -> Calibrated | None:
    """This run's own costs (None: it ran no calibration op). An op that cannot measure its
    cost under the profile (hlt where HLT does not exit) is left out, not an error."""
    ops = []
    for c in calibration_ops(timings, with_judged):
        try:
            calibrate(ops + [c], profile, arch, base)
            ops.append(c)
        except ModelError:
            continue
    return calibrate(ops, profile, arch, base) if ops else None


def predict_latency(op: str, profile: str, arch: str, costs: Calibrated, tsc_khz: int) -> LatencyBand | None:
    """The model's latency band of the op's timed path (None: the model does not price it)."""
    s = spec(op)
    return latency_band(s.latency_path, profile, arch, costs, tsc_khz) if s.latency_path else None
