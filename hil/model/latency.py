"""Latency of a timed path (the events between two TSC stamps) from the cost model, with the
host's costs calibrated on the lab itself, and the tolerance band the verdict holds a measured
p50 and p99 against. Pure: samples in, cycles out.

Calibration: each calibration op's per-iteration cycles, at a quantile, minus what the model
already prices on its path, divided by how often the unknown cost occurs there, is that cost
at that quantile (cpuid -> exit_entry, pio-user -> userspace, hlt -> halt_wakeup, a device
MSI -> ipi/nmi, the delivery of an interrupt that reaches a running vCPU). The quantile of a
difference is not the difference of quantiles: the costs are estimates, which is why the band
is built from the calibration's spread (p10..p90, and its worst sample) and not its median alone.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

from hil.model.cost import HostCosts
from hil.model.errors import ModelError
from hil.model.predict import _effect, check_arch, profile as get_profile
from hil.model.types import ZERO

#: a model event with its parameters, as hil/scenario/probe_ops.py spells them
Step = tuple[str, tuple[tuple[str, str], ...]]

#: the quantiles a calibrated profile keeps costs at (10 and 90 bound the p50). A tail is no
#: per-mechanism cost (a preempted vCPU thread delays whatever it was doing): it is kept as one
#: figure, the largest excess of a calibration sample over its op's median (Calibrated.tail):
#: a judged p99 over fewer than 100 samples is their maximum, so the calibration's maximum is
#: the statistic to hold it against.
QUANTILES = (10, 50, 90)

# Why the band is as wide as it is (a measured p50 or p99 outside it is a FAIL):
#: p50 may differ from the calibrated path by this factor either way: under TCG an exit round
#: trip's cost depends on which translated blocks are cached and on L0's CPU frequency, so the
#: median of the same mechanism moves between runs on one quiet host (dev-msi p50 57..121 us
#: and cpuid 140..250 kcycles per iteration in this lab's runs of 2026-12); 2x covers that
#: drift and nothing else: a path with one exit more or less than the model says moves the p50
#: by about one round trip, which the band's ends (exits' low/high bounds) already price.
P50_DRIFT = 2.0
#: what a p99 may add to the slow path and the calibration's tail: one wait of L0's vCPU thread for its
#: CPU behind the lab's other threads. On the 2-CPU L0 (EEVDF, base slice 0.75 ms x (1 +
#: log2 CPUs) = 1.5 ms) with at most nproc runnable threads (the host-load check makes a
#: busier host inconclusive) a waiting thread is behind at most one slice per other runnable
#: thread on the CPU: L1's other vCPU, QEMU's I/O thread, hil itself -> 3 x 1.5 ms; and one
#: L1 timer tick (HZ=250) handled on the path under TCG, < 4 ms. 8.5 ms in all.
TAIL_NS = 8_500_000


@dataclass(frozen=True)
class CalibrationOp:
    """One calibration op's per-iteration cycles and what its path is made of."""
    op: str
    costs: tuple[str, ...]            # the HostCosts fields it measures (set equal: ipi and nmi)
    steps: tuple[Step, ...]           # model events on the timed path of one iteration
    samples: tuple[int, ...]          # cycles per iteration
    fixed: int = 0                    # cycles on the path that are no mechanism (hlt: the timer's period)


@dataclass(frozen=True)
class Calibrated:
    """A host's costs at each quantile of its calibration samples; `measured` names the costs
    that were measured, the rest come from the base profile at every quantile."""
    at: Mapping[int, HostCosts]
    measured: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)     # cost -> "op (n samples)"
    tail: int = 0               # cycles: the largest sample - median of any calibration op

    @property
    def costs(self) -> HostCosts:
        return self.at[50]

    def to_mapping(self) -> dict[str, object]:
        return {"cycles": _cycles(self.at[50]),
                "quantiles": {f"p{q}": _cycles(self.at[q]) for q in QUANTILES if q != 50},
                "measured": list(self.measured), "sources": dict(self.sources), "tail_cycles": self.tail}

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], source: str = "host profile") -> "Calibrated":
        """A profile file's `cycles` (p50) and, when calibrated, `calibration.quantiles`;
        an uncalibrated profile has its one set of costs at every quantile."""
        base = HostCosts.from_mapping(data, source)
        cal = data.get("calibration") if isinstance(data, Mapping) else None
        if not isinstance(cal, Mapping):
            return cls({q: base for q in QUANTILES})
        quantiles = cal.get("quantiles") or {}
        if not isinstance(quantiles, Mapping):
            raise ModelError(f"{source}: calibration.quantiles: expected a mapping of p10/p90 -> costs")
        at = {50: base}
        for q in QUANTILES:
            if q != 50:
                got = quantiles.get(f"p{q}")
                if got is not None and not isinstance(got, Mapping):
                    raise ModelError(f"{source}: calibration.quantiles.p{q}: expected a mapping of costs")
                at[q] = HostCosts.from_mapping({"cycles": {**_cycles(base), **(got or {})}},
                                               f"{source}: calibration.quantiles.p{q}")
        measured = cal.get("measured") or ()
        if not isinstance(measured, (list, tuple)) or not all(isinstance(m, str) for m in measured):
            raise ModelError(f"{source}: calibration.measured: expected a list of cost names")
        tail = cal.get("tail_cycles", 0)
        if not isinstance(tail, int) or isinstance(tail, bool) or tail < 0:
            raise ModelError(f"{source}: calibration.tail_cycles: expected a non-negative integer, got {tail!r}")
        return cls(at, tuple(measured), dict(cal.get("sources") or {}), tail)

    def overlaid(self, other: "Calibrated") -> "Calibrated":
        """These costs with every cost `other` measured taken from `other` (a run's own figures
        over a kept profile's)."""
        at = {q: replace(self.at[q], **{k: getattr(other.at[q], k) for k in other.measured}) for q in QUANTILES}
        measured = tuple(dict.fromkeys(self.measured + other.measured))
        return Calibrated(at, measured, {**self.sources, **other.sources}, max(self.tail, other.tail))


def _cycles(c: HostCosts) -> dict[str, int]:
    return {f.name: getattr(c, f.name) for f in fields(c)}


def quantile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (a value that was measured)."""
    v = sorted(values)
    if not v:
        raise ModelError("no samples")
    return v[max(1, math.ceil(len(v) * q / 100)) - 1]


def path_cycles(steps: Sequence[Step], profile_name: str, arch: str, costs: HostCosts,
                bound: str = "low") -> int:
    """Cycles of a path of model events with each exit counted at its bound ("low": the
    fewest the model allows; "high": the most, an unbounded count at its low end, since
    ambient noise is no cost of the event). Interrupt delivery (ipi or nmi) is priced once
    per event that can deliver by an external-interrupt or NMI exit."""
    p = get_profile(profile_name)
    check_arch(p, arch)
    total = 0
    for event, params in steps:
        e = _effect(p.name, arch, event, params, "x2apic")
        exits = sum((b.high if bound == "high" and b.high is not None else b.low) for b in e.exits.values())
        total += exits * costs.exit_entry + e.bounces.low * costs.bounce + e.guest_interrupts.low * costs.guest_handler
        total += e.counters.get("userspace_exits", ZERO).low * costs.userspace
        total += e.counters.get("irq_injections", ZERO).low * costs.injection
        total += e.counters.get("halt_wakeup", ZERO).low * costs.halt_wakeup
        if "EXTINT" in e.exits:
            total += costs.ipi
        elif "NMI" in e.exits:
            total += costs.nmi
    return total


def calibrate(ops: Sequence[CalibrationOp], profile_name: str, arch: str, base: HostCosts) -> Calibrated:
    """Each op's costs, in order (a later op's path may hold an earlier op's cost), at every
    quantile. An op whose path does not depend on its cost under this profile is an error:
    it cannot measure it there (hlt under a profile that does not exit on HLT)."""
    at: dict[int, HostCosts] = {}
    sources: dict[str, str] = {}
    for q in QUANTILES:
        costs = base
        for op in ops:
            if not op.samples:
                raise ModelError(f"calibration op {op.op}: no samples")
            zero = path_cycles(op.steps, profile_name, arch, replace(costs, **{c: 0 for c in op.costs}))
            one = path_cycles(op.steps, profile_name, arch, replace(costs, **{c: 1 for c in op.costs}))
            if one <= zero:
                raise ModelError(f"calibration op {op.op}: under {profile_name} its path has no "
                                 f"{'/'.join(op.costs)}: it cannot measure that cost")
            value = max(0, round((quantile(op.samples, q) - op.fixed - zero) / (one - zero)))
            costs = replace(costs, **{c: value for c in op.costs})
            for c in op.costs:
                sources[c] = f"{op.op} ({len(op.samples)} samples)"
        at[q] = costs
    measured = tuple(dict.fromkeys(c for op in ops for c in op.costs))
    # a cost taken as a difference of quantiles can come out with its p10 above its p50 (a wide
    # earlier op: cpuid p10 57 us, p50 102 us made ipi's p10 123 us over a p50 of 108 us, and the
    # band's fast path then above a p50 measured at that p50's speed): ordered, so p10 <= p50 <= p90
    for c in measured:
        at[10] = replace(at[10], **{c: min(getattr(at[10], c), getattr(at[50], c))})
        at[90] = replace(at[90], **{c: max(getattr(at[90], c), getattr(at[50], c))})
    tail = max((max(op.samples) - quantile(op.samples, 50) for op in ops), default=0)
    return Calibrated(at, measured, sources, tail)


@dataclass(frozen=True)
class LatencyBand:
    """A path's predicted latency in cycles: the nominal p50, the p50's band and the p99's
    ceiling, each bound with its reason."""
    nominal: int
    p50_low: int
    p50_high: int
    p99_high: int
    reasons: Mapping[str, str]

    def scaled(self, factor: float) -> dict[str, float]:
        """The same in another unit (ns: factor = 1e6 / tsc_khz)."""
        return {"nominal": self.nominal * factor, "p50_low": self.p50_low * factor,
                "p50_high": self.p50_high * factor, "p99_high": self.p99_high * factor}


def latency_band(steps: Sequence[Step], profile_name: str, arch: str, cal: Calibrated, tsc_khz: int,
                 p50_drift: float = P50_DRIFT, tail_ns: int = TAIL_NS) -> LatencyBand:
    if not steps:
        raise ModelError("a latency path needs at least one event")
    fast = path_cycles(steps, profile_name, arch, cal.at[10], "low")
    nominal = path_cycles(steps, profile_name, arch, cal.at[50], "low")
    slow = path_cycles(steps, profile_name, arch, cal.at[90], "high")
    allowance = tail_ns * tsc_khz // 1_000_000
    low, high = int(fast / p50_drift), int(slow * p50_drift)
    return LatencyBand(nominal, low, high, slow + cal.tail + allowance, {
        "p50_low": f"the path with the fewest exits the model allows, every cost at its calibrated p10, "
                   f"/ {p50_drift:g} (run-to-run drift of TCG's translated code and L0's clock)",
        "p50_high": f"the path with the most exits the model allows, every cost at its calibrated p90, "
                    f"x {p50_drift:g} (the same drift)",
        "p99_high": f"the path at p90 with the most exits, + the calibration's worst sample's excess over its "
                    f"median ({cal.tail * 1000 // max(tsc_khz, 1)} us: host events that delay any mechanism), "
                    f"+ {tail_ns / 1e6:g} ms: L0's vCPU thread waiting for its CPU behind the lab's other "
                    "threads, and one L1 timer tick"})


def ordered(a: LatencyBand, b: LatencyBand) -> bool:
    """Whether the model predicts b's latency no higher than a's (by the nominal path)."""
    return b.nominal <= a.nominal
