"""Invariants of the model, checked over generated workloads (hypothesis)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.model import EVENTS, PROFILES, Operation, predict
from hil.model.race import enumerate_kicks, kick_at, simulate

pairs = st.sampled_from(sorted((p, a) for p, prof in PROFILES.items() for a in prof.arches))
arches = st.sampled_from(["svm", "vmx"])
deterministic = st.sampled_from(sorted(n for n, e in EVENTS.items() if e.deterministic))
counts = st.integers(min_value=0, max_value=10_000)


@given(pairs, deterministic, counts, st.integers(min_value=1, max_value=50))
def test_deterministic_exits_scale_linearly(pair, event, n, k):
    profile, arch = pair
    one = predict([Operation(event, n)], profile, arch).exits
    many = predict([Operation(event, n * k)], profile, arch).exits
    for reason, b in one.items():
        if b.exact:
            assert many[reason].low == b.low * k or reason in ("interrupt", "EXTERNAL_INTERRUPT")


@given(pairs, counts)
def test_cpuid_exits_equal_cpuid_count_everywhere(pair, n):
    profile, arch = pair
    pred = predict([Operation("cpuid", n)], profile, arch)
    name = "cpuid" if arch == "svm" else "CPUID"
    assert pred.exits.get(name, None) is not None or n == 0
    if n:
        assert pred.exits[name].low == pred.exits[name].high == n


@given(st.sampled_from(["slave-v1", "slave-v2"]), arches, counts,
       st.sampled_from(["running", "halted"]))
def test_no_external_interrupt_exit_for_direct_msi_under_slave_profiles(profile, arch, n, state):
    pred = predict([Operation.of("msi-assigned", n, guest_state=state)], profile, arch)
    assert "interrupt" not in pred.exits and "EXTERNAL_INTERRUPT" not in pred.exits
    assert pred.guest_interrupts.low == n and pred.counters.get("irq_exits") is None


@given(pairs, st.lists(st.tuples(deterministic, counts), max_size=6))
def test_counters_follow_exits(pair, ops):
    profile, arch = pair
    pred = predict([Operation(e, n) for e, n in ops], profile, arch)
    total_low = sum(b.low for b in pred.exits.values())
    assert pred.counters["exits"].low == total_low


def test_v1_kick_race_loses_a_kick_and_v2_turns_it_into_one_preempt_exit():
    v1 = {o.lands_at: o for o in enumerate_kicks(PROFILES["slave-v1"])}
    v2 = {o.lands_at: o for o in enumerate_kicks(PROFILES["slave-v2"])}
    assert not v1["entering"].seen and v1["entering"].exit_reason is None and v1["entering"].delay_steps is None
    assert v2["entering"].seen and v2["entering"].exit_reason == "PREEMPT"
    from hil.model import names
    assert names.reason("vmx", "PREEMPT") == "PREEMPTION_TIMER"      # v2/16: exit reason 52
    assert all(o.seen for o in v2.values())
    # the seed also loses every kick that finds the vCPU stuck at EXITING after a lost one
    assert [o.lands_at for o in v1.values() if not o.seen] == ["entering", "in-guest-stuck"]
    assert v2["in-guest-stuck"].exit_reason == "NMI"     # v2 signals EXITING too
    stock = enumerate_kicks(PROFILES["stock-2012"])
    assert all(o.seen for o in stock) and kick_at(PROFILES["stock-2012"], 3).exit_reason == "EXTINT"


@settings(max_examples=20)
@given(st.integers(min_value=1, max_value=500), st.integers(min_value=0, max_value=2**31))
def test_race_stress_v2_loses_nothing_v1_loses_in_the_window_and_while_stuck(kicks, seed):
    v2 = simulate(PROFILES["slave-v2"], kicks, seed, rescue_every=50)
    v1 = simulate(PROFILES["slave-v1"], kicks, seed, rescue_every=50)
    assert v2.lost == 0 and v2.stuck == 0
    assert v2.exits.get("PREEMPT", 0) == v2.window         # prevent-run: one exit per window landing
    assert v1.lost == v1.window + v1.stuck                # the first loss, then every kick until a rescue
    assert (v1.lost > 0) == (v1.window > 0)


def test_profile_arch_mismatch_is_refused():
    import pytest
    from hil.model import ModelError
    with pytest.raises(ModelError, match="architecture for profile stock-svm"):
        predict([Operation("cpuid", 1)], "stock-svm", "vmx")


def test_mode_state_machine_decides_who_signals():
    from hil.model.race import STEPS, signals
    exiting = STEPS.index("exiting")
    assert signals(PROFILES["slave-v2"], exiting) and not signals(PROFILES["slave-v1"], exiting)
    assert not signals(PROFILES["slave-v1"], STEPS.index("outside"))
    assert signals(PROFILES["stock-2012"], STEPS.index("in-guest"))
