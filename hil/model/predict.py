"""predict: operations x counts -> exits by reason, counters, guest interrupts, bounces.
Closed form: operations are first summed per (event, parameters), then each distinct one's
per-occurrence effect is scaled by its total, plus the profile's ambient noise (also reported
apart: Prediction.ambient); a million
single-count operations cost one dictionary update each."""
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from hil.model import names
from hil.model.events import event as event_spec
from hil.model.errors import ModelError, unknown
from hil.model.profiles import PROFILES, Profile
from hil.model.semantics import Effect, ambient, effect
from hil.model.types import ZERO, Bound, Operation, Prediction

APIC_MODES = ("x2apic", "xapic")


def profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown("profile", name, PROFILES)
    return PROFILES[name]


def check_arch(p: Profile, arch: str) -> None:
    if arch not in p.arches:
        raise ModelError(f"profile {p.name} does not exist on {arch!r}; its architectures: {', '.join(p.arches)}")


@lru_cache(maxsize=8192)
def _effect(profile_name: str, arch: str, event: str, params: tuple[tuple[str, str], ...], apic: str) -> Effect:
    spec = event_spec(event)
    return effect(PROFILES[profile_name], arch, event, spec.resolve(dict(params), apic))


def _totals(ops: Iterable[Operation]) -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    get = totals.get
    for op in ops:
        key = (op.event, op.params)
        totals[key] = get(key, 0) + op.count
    return totals


def predict(ops: Iterable[Operation], profile_name: str, arch: str, *, apic: str = "x2apic") -> Prediction:
    p = profile(profile_name)
    check_arch(p, arch)
    if apic not in APIC_MODES:
        raise unknown("APIC mode", apic, APIC_MODES)
    pred = Prediction(p.name, arch)
    assumptions: set[str] = set()
    exits: dict[str, Bound] = {}
    handled: dict[str, str] = {}

    def fold(e: Effect, k: int) -> None:
        for r, b in e.exits.items():
            exits[r] = exits.get(r, ZERO) + b * k
            handled.setdefault(r, e.handled_on[r])
        for c, b in e.counters.items():
            name = names.counter(c, p.era)
            pred.counters[name] = pred.counters.get(name, ZERO) + b * k
        pred.guest_interrupts = pred.guest_interrupts + e.guest_interrupts * k
        pred.misdelivered = pred.misdelivered + e.misdelivered * k
        pred.bounces = pred.bounces + e.bounces * k
        pred.delivered = pred.delivered and (e.delivered or k == 0)
        assumptions.update(e.assumptions)

    for (event, params), k in _totals(ops).items():
        fold(_effect(p.name, arch, event, params, apic), k)
    noise = ambient(p)
    fold(noise, 1)
    for r, b in noise.exits.items():
        pred.ambient[names.reason(arch, r, p.era)] = b
    pred.ambient_assumptions = sorted(noise.assumptions)
    total = ZERO
    for r, b in exits.items():
        name = names.reason(arch, r, p.era)
        pred.exits[name] = pred.exits.get(name, ZERO) + b
        where = handled[r]
        pred.handled_on[name] = where if p.dedicated_cpu or where != "dedicated" else "vcpu-cpu"
        total = total + b
        if r in names.COUNTED_EXITS:
            pred.counters[names.counter(names.COUNTED_EXITS[r], p.era)] = b   # one reason per stat
    pred.counters["exits"] = total
    pred.assumptions = sorted(assumptions)
    return pred


def predict_event(profile_name: str, arch: str, event: str, count: int, **params: str) -> Prediction:
    apic = params.pop("apic", "x2apic")
    return predict([Operation.of(event, count, **params)], profile_name, arch, apic=apic)
