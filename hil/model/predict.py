"""predict: operations x counts -> exits by reason, counters, guest interrupts, bounces.
Closed form: each event's per-occurrence effect times its count, plus the profile's ambient
noise, so a million events cost no more than one."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from hil.model import names
from hil.model.events import event as event_spec
from hil.model.errors import ModelError, unknown
from hil.model.profiles import PROFILES, Profile
from hil.model.semantics import Effect, ambient, effect
from hil.model.types import ZERO, Bound, Operation, Prediction


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown("profile", name, PROFILES)
    return PROFILES[name]


@lru_cache(maxsize=4096)
def _effect(profile_name: str, event: str, params: tuple[tuple[str, str], ...], apic: str) -> Effect:
    spec = event_spec(event)
    return effect(PROFILES[profile_name], event, spec.resolve(dict(params), apic))


def predict(ops: Sequence[Operation], profile_name: str, arch: str, *, apic: str = "x2apic") -> Prediction:
    p = profile(profile_name)
    if arch not in p.arches:
        raise unknown(f"architecture for profile {p.name}", arch, p.arches)
    if apic not in ("x2apic", "xapic"):
        raise unknown("APIC mode", apic, ("x2apic", "xapic"))
    pred = Prediction(p.name, arch)
    assumptions: set[str] = set()
    exits: dict[str, Bound] = {}
    handled: dict[str, str] = {}

    def fold(e: Effect, k: int) -> None:
        for r, b in e.exits.items():
            exits[r] = exits.get(r, ZERO) + b * k
            handled.setdefault(r, e.handled_on.get(r, "dedicated"))
        for c, b in e.counters.items():
            name = names.counter(c, p.era)
            pred.counters[name] = pred.counters.get(name, ZERO) + b * k
        pred.guest_interrupts = pred.guest_interrupts + e.guest_interrupts * k
        pred.bounces = pred.bounces + e.bounces * k
        pred.delivered = pred.delivered and (e.delivered or k == 0)
        assumptions.update(e.assumptions)

    for op in ops:
        if op.count < 0:
            raise ModelError(f"count of {op.event} must be >= 0, got {op.count}")
        fold(_effect(p.name, op.event, tuple(sorted(op.params)), apic), op.count)
    fold(ambient(p), 1)
    if "PREEMPT" in exits and arch == "svm":
        assumptions.add("svm-prevent-run-exit")
    total = ZERO
    for r, b in exits.items():
        name = names.reason(arch, r, p.era)
        pred.exits[name] = pred.exits.get(name, ZERO) + b
        where = handled[r]
        pred.handled_on[name] = where if p.dedicated_cpu or where != "dedicated" else "vcpu-cpu"
        total = total + b
        if r in names.COUNTED_EXITS:
            c = names.counter(names.COUNTED_EXITS[r], p.era)
            pred.counters[c] = pred.counters.get(c, ZERO) + b
    pred.counters["exits"] = total
    pred.assumptions = sorted(assumptions)
    return pred


def predict_event(profile_name: str, arch: str, event: str, count: int, **params: str) -> Prediction:
    apic = params.pop("apic", "x2apic")
    return predict([Operation.of(event, count, **params)], profile_name, arch, apic=apic)
