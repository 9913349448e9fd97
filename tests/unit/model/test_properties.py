"""Semantic laws the model must obey, over every cell and over generated workloads
(hypothesis): monotonicity in counts, profile orderings, conservation between exits and
counters, and that the profile flags decide the answers (no flag nobody reads)."""
import itertools
from dataclasses import fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.model import EVENTS, PROFILES, ModelError, Operation, predict
from hil.model import names
from hil.model.assumptions import ASSUMPTIONS
from hil.model.race import STEP_WINDOW, STEPS, enumerate_kicks, kick_at, simulate
from hil.model.semantics import ambient, effect
from hil.model.types import Bound


def _param_sets(event):
    spec = EVENTS[event]
    keys = sorted(spec.params)
    for values in itertools.product(*(spec.params[k] for k in keys)):
        yield dict(zip(keys, values))


def _cells(profile, arch):
    """(event, params, effect) for every question the profile answers on arch."""
    for event in EVENTS:
        for q in _param_sets(event):
            try:
                yield event, q, effect(profile, arch, event, q)
            except ModelError:
                continue


PAIRS = sorted((name, a) for name, p in PROFILES.items() for a in p.arches)
pairs = st.sampled_from(PAIRS)
ops = st.lists(st.tuples(st.sampled_from(sorted(EVENTS)), st.integers(0, 1000)), max_size=8)


def _le(a: Bound, b: Bound) -> bool:
    return a.low <= b.low and (b.high is None or (a.high is not None and a.high <= b.high))


@settings(max_examples=60, deadline=None)
@given(pairs, ops, st.sampled_from(sorted(EVENTS)), st.integers(1, 1000))
def test_more_work_never_predicts_fewer_exits(pair, workload, extra, n):
    """Monotonic in counts: adding operations never lowers any bound."""
    profile, arch = pair
    base = [Operation(e, k) for e, k in workload]
    a = predict(base, profile, arch)
    b = predict(base + [Operation(extra, n)], profile, arch)
    for reason, bound in a.exits.items():
        assert _le(bound, b.exits[reason])
    for c, bound in a.counters.items():
        assert _le(bound, b.counters[c])
    assert _le(a.guest_interrupts, b.guest_interrupts) and _le(a.misdelivered, b.misdelivered)


@settings(max_examples=60, deadline=None)
@given(pairs, ops)
def test_conservation_between_exits_and_counters(pair, workload):
    """Every exit is counted once in 'exits', and each counted reason equals its KVM stat;
    no injection without an interrupt the guest takes."""
    profile, arch = pair
    p = PROFILES[profile]
    pred = predict([Operation(e, k) for e, k in workload], profile, arch)
    total = Bound(0, 0)
    for b in pred.exits.values():
        total = total + b
    assert pred.counters["exits"] == total
    for abstract, stat in names.COUNTED_EXITS.items():
        reason = names.reason(arch, abstract, p.era)
        assert pred.counters.get(names.counter(stat, p.era), Bound(0, 0)) == pred.exits.get(reason, Bound(0, 0))
    assert pred.counters.get("irq_injections", Bound(0, 0)).low <= pred.guest_interrupts.low


@pytest.mark.parametrize("dedicated,arch", [(n, a) for n, a in PAIRS if n in (
    "dedicated-hlt", "dedicated-v1", "dedicated-v2", "disable-exits", "disable-exits-hlt", "slave-v1", "slave-v1-full",
    "slave-v2")])
def test_a_dedicated_cpu_never_exits_more_than_stock(dedicated, arch):
    """For the same event on a vCPU that is not halted (what halts it is its own event, hlt),
    a profile that takes exits away never guarantees more exits than stock of its era, and for
    exact answers never more at all."""
    d = PROFILES[dedicated]
    stock = PROFILES["stock-2012" if d.era == "2012" else f"stock-{arch}"]
    for event, q, e in _cells(d, arch):
        if "halted" in (q.get("guest_state"), q.get("target_state")):
            continue
        if q.get("pv_eoi") == "on" and not d.pv_eoi:
            continue        # the one exception: the slave series refuses PV-EOI (v2/14), so that EOI traps
        try:
            s = effect(stock, arch, event, q)
        except ModelError:
            continue
        dl = sum(b.low for b in e.exits.values())
        sl = sum(b.low for b in s.exits.values())
        assert dl <= sl, (event, q, e.exits, s.exits)
        if all(b.exact for b in e.exits.values()) and all(b.exact for b in s.exits.values()):
            assert dl <= sl


@pytest.mark.parametrize("pair", PAIRS)
def test_flags_hold_in_every_cell(pair):
    """External-interrupt exiting off (or v2 in direct mode) means no EXTINT anywhere; HLT not
    exiting means no HLT exit; no APIC virtualisation means every interrupt taken is injected."""
    profile, arch = pair
    p = PROFILES[profile]
    for event, q, e in _cells(p, arch):
        if p.ext_int_exiting == "off" or (p.ext_int_exiting == "toggled" and q.get("direct") == "on"):
            assert "EXTINT" not in e.exits, (event, q)
        if not p.hlt_exiting:
            assert "HLT" not in e.exits, (event, q)
        if e.misdelivered.low:
            assert not e.delivered and p.ext_int_exiting != "on"
        if not p.apicv and not p.direct_msi and not p.timer_passthrough:
            assert e.counters.get("irq_injections", Bound(0, 0)) == e.guest_interrupts, (event, q)
        for name in e.exits:
            names.reason(arch, name, p.era)          # every reason exists on the arch


CHOICES = {"era": ["2012", "modern"], "ext_int_exiting": ["on", "off", "toggled"],
           "kick": ["ipi", "nmi-if-in-guest", "nmi-unless-outside"]}


def _answers(p):
    out = []
    for arch in ("svm", "vmx"):
        for event, q, e in _cells(p, arch):
            out.append((arch, event, tuple(sorted(q.items())), sorted(e.exits.items()), sorted(e.counters.items()),
                        e.guest_interrupts, e.bounces, e.delivered, e.misdelivered))
    out.append(tuple((k.exit_reason, k.seen, k.bounce) for k in enumerate_kicks(p)))
    out.append(ambient(p).exits)
    return out


@pytest.mark.parametrize("flag", [f.name for f in fields(PROFILES["stock-svm"])
                                  if f.name not in ("name", "description", "arches", "assumptions")])
def test_every_profile_flag_changes_some_answer(flag):
    """A flag nobody reads cannot exist: flipping it changes a cell, a kick outcome or the
    ambient noise of at least one profile."""
    for p in PROFILES.values():
        cur = getattr(p, flag)
        for other in ([not cur] if isinstance(cur, bool) else [c for c in CHOICES[flag] if c != cur]):
            if _answers(replace(p, **{flag: other})) != _answers(p):
                return
    pytest.fail(f"no answer depends on {flag}")


def test_disable_exits_and_disable_exits_hlt_differ_where_kvm_does():
    full, hlt = PROFILES["disable-exits"], PROFILES["disable-exits-hlt"]
    timer = {"apic": "x2apic", "guest_state": "running", "mode": "oneshot", "armed_with": "interrupts-on",
             "lvtt_vector": "0xef", "direct": "on"}
    assert set(effect(full, "vmx", "timer", timer).exits) == {"MSR_WRITE", "EXTINT"}      # MWAIT in guest: hrtimer
    assert set(effect(hlt, "vmx", "timer", timer).exits) == {"MSR_WRITE", "HV_TIMER"}
    assert effect(full, "vmx", "mwait", {}).exits == {} and "MWAIT" in effect(hlt, "vmx", "mwait", {}).exits
    assert effect(full, "svm", "pause-spin", {}).exits == {} and "PAUSE" in effect(hlt, "svm", "pause-spin", {}).exits


def test_assumptions_are_all_named_and_all_used():
    used = set()
    for name, p in PROFILES.items():
        for arch in p.arches:
            for _, _, e in _cells(p, arch):
                used.update(e.assumptions)
        used.update(ambient(p).assumptions)
        for k in enumerate_kicks(p):
            used.update(k.assumptions)
    assert used <= set(ASSUMPTIONS), used - set(ASSUMPTIONS)
    assert set(ASSUMPTIONS) <= used, set(ASSUMPTIONS) - used


def test_slave_profiles_are_vmx_only():
    for name in ("slave-v1", "slave-v1-full", "slave-v2"):
        with pytest.raises(ModelError, match="its architectures: vmx"):
            predict([Operation("kick", 1)], name, "svm")


# ---- the kick race

def test_the_seed_loses_a_kick_in_the_window_and_v2_turns_it_into_one_exit_and_a_bounce():
    seed, v2, port = PROFILES["slave-v1"], PROFILES["slave-v2"], PROFILES["dedicated-v2"]
    lost = kick_at(seed, STEP_WINDOW, later_exits=False)
    assert not lost.seen and lost.exit_reason is None and lost.delay_steps is None
    late = kick_at(seed, STEP_WINDOW)          # v1's EOIs trap: some later exit delivers it
    assert late.seen and late.delay_steps is None
    prevented = kick_at(v2, STEP_WINDOW)
    assert prevented.exit_reason == "PREEMPT" and prevented.bounce and "prevent-run-exit" in prevented.assumptions
    assert kick_at(port, STEP_WINDOW).exit_reason == "PREEMPT" and not kick_at(port, STEP_WINDOW).bounce
    assert kick_at(PROFILES["slave-v1-full"], STEP_WINDOW).exit_reason == "PREEMPT"
    assert names.reason("vmx", "PREEMPT") == "PREEMPTION_TIMER" and names.reason("svm", "PREEMPT") == "nmi"
    assert all(o.seen for o in enumerate_kicks(v2))
    stuck = STEPS.index("in-guest-stuck")
    assert not kick_at(seed, stuck, later_exits=False).seen and kick_at(v2, stuck).exit_reason == "NMI"
    assert kick_at(PROFILES["stock-2012"], STEP_WINDOW).exit_reason == "EXTINT"


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1500, max_value=3000), st.integers(min_value=0, max_value=2**31))
def test_without_rescue_the_seed_loses_every_kick_after_the_first_window_landing(kicks, seed):
    """The sticky EXITING state: one window landing, then every later kick finds the vCPU
    stuck and is lost too (so no second window landing can happen)."""
    v1 = simulate(PROFILES["slave-v1"], kicks, seed)
    assert v1.window == 1 and v1.stuck > 0 and v1.lost == 1 + v1.stuck
    v2 = simulate(PROFILES["slave-v2"], kicks, seed)
    assert v2.lost == 0 and v2.stuck == 0 and v2.window > 1 and v2.exits["PREEMPT"] == v2.window


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=2**31))
def test_with_rescues_the_seed_loses_only_in_the_window_and_while_stuck(kicks, seed):
    v1 = simulate(PROFILES["slave-v1"], kicks, seed, rescue_every=50)
    assert v1.lost == v1.window + v1.stuck and (v1.lost > 0) == (v1.window > 0)
    stock = simulate(PROFILES["stock-2012"], kicks, seed, rescue_every=50)
    assert stock.lost == 0 and set(stock.exits) <= {"EXTINT"} and stock.stuck == 0


def test_simulate_is_a_function_of_its_seed_and_counts_kicks_and_rescues():
    v1 = PROFILES["slave-v1"]
    a, b = simulate(v1, 400, seed=7, rescue_every=50), simulate(v1, 400, seed=7, rescue_every=50)
    assert a == b and a != simulate(v1, 400, seed=8, rescue_every=50)
    assert a.events == 400 + (400 * 24) // 50 + 1 and simulate(v1, 400, seed=7).events == 400 and a.kicks == 400
    assert simulate(v1, 300) == simulate(v1, 300, seed=0)
    with pytest.raises(ModelError, match="entry_steps"):
        simulate(v1, 10, entry_steps=5)


def test_a_rescue_ends_the_stuck_state_only_when_it_comes():
    """Rescues far apart: the vCPU stays stuck between them (so the seed loses every kick after
    its first window landing); rescues often: it does not stay stuck."""
    v1 = PROFILES["slave-v1"]
    rare = simulate(v1, 2000, seed=3, rescue_every=10**9)
    assert rare.window == 1 and rare.lost == 1 + rare.stuck and rare.stuck > 100
    often = simulate(v1, 2000, seed=3, rescue_every=24)
    assert often.window > 10 and often.stuck < often.window * 3


@pytest.mark.parametrize("pair", PAIRS)
def test_where_exits_are_handled_follows_who_handles_them(pair):
    """An external-interrupt exit runs the host's handler: on the host (stock), online after a
    bounce (slave series, v2/09); a userspace device's exit ends in QEMU: host or online (v2/06);
    a slave's page fault is resolved online (v2/07); everything else on the vCPU's own CPU."""
    profile, arch = pair
    p = PROFILES[profile]
    for event, q, e in _cells(p, arch):
        assert set(e.handled_on) == set(e.exits)
        for r, where in e.handled_on.items():
            away = r == "EXTINT" or "userspace_exits" in e.counters and r in ("IO", "EPT_MISCONFIG")
            if p.bounce_to_online and (away or r == "EPT_VIOLATION"):
                assert where == "online", (event, q, r)
            elif away:
                assert where == "host", (event, q, r)
            else:
                assert where == "dedicated", (event, q, r)
