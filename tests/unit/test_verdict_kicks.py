"""Kick verdicts on fake measurements (pure logic): the model's kick_at applied to where the
kicks landed, against exits, interrupts taken and late kicks."""
from hil.measurement import KickFinding, KickTrace, NmiLanding, OpMeasurement
from tests.unit.fakes import measurement, scenario, verdict


def race(scenario, *, window, pending, late, guest_nmis, self_nmis, stuck_kicks=0, irqs=None, intr=0,
         stock_ipis=0, host_resched=0, load=None):
    sc = scenario_(scenario)
    n = sc.workload.ops[0].count
    irqs = n - late if irqs is None else irqs
    op = OpMeasurement("ipi-race", n, {"nmi": guest_nmis, "msr": irqs, "vintr": 7, **({"interrupt": intr} if intr else {})},
                       reported={"count": n, "irqs": irqs, "sent": n, "late": late})
    trace = KickTrace(accepted=n, window=window, window_pending=pending, guest_nmis_all_vcpus=guest_nmis,
                      series_traced=True,
                      found=[KickFinding("in-guest", True, guest_nmis), KickFinding("exiting", False, stuck_kicks)],
                      landed=[NmiLanding("guest", guest_nmis, guest_nmis - self_nmis, self_nmis, 0),
                              NmiLanding("entry", 3 + window, 3 + window, 0, 0)],
                      stock_kicks={"in-guest": stock_ipis},
                      host_interrupts_per_op={"ipi-race": {"reschedule": {"1": host_resched},
                                                           "local_timer": {"0": 99}}})
    prov = {"host_load": {"before": load[0], "after": load[1], "nproc": 2}} if load else {}
    m = measurement([op], exits_all={"nmi": guest_nmis, "msr": irqs, "io": 10}, kick_trace=trace)
    m.provenance = prov
    return verdict(sc, m)


def scenario_(name):
    return scenario(name)


def case(result):
    return result.cases[0]


def test_v2_prevent_run_catches_every_window_landing():
    r = race("kick-race-v2", window=9, pending=4, late=0, guest_nmis=500, self_nmis=9)
    assert r.verdict.value == "PASS", case(r).detail


def test_v2_with_a_late_kick_fails():
    r = race("kick-race-v2", window=9, pending=4, late=1, guest_nmis=500, self_nmis=9)
    assert r.verdict.value == "FAIL" and "late kicks" in case(r).detail


def test_v2_prevent_run_must_exit_once_per_window_landing():
    r = race("kick-race-v2", window=9, pending=4, late=0, guest_nmis=500, self_nmis=8)
    assert r.verdict.value == "FAIL" and "prevent-run NMIs" in case(r).detail


def test_v1_loses_at_least_the_pending_window_landings_and_at_most_those_plus_stuck_kicks():
    ok = race("kick-race-v1", window=9, pending=4, late=40, guest_nmis=500, self_nmis=0, stuck_kicks=60)
    assert ok.verdict.value == "PASS", case(ok).detail
    too_few = race("kick-race-v1", window=9, pending=4, late=2, guest_nmis=500, self_nmis=0, stuck_kicks=60)
    assert too_few.verdict.value == "FAIL" and "late kicks" in case(too_few).detail
    # an unrelated exit may deliver a lost kick before it counts as late: the lower bound drops
    rescued = race("kick-race-v1", window=9, pending=4, late=2, guest_nmis=500, self_nmis=0, stuck_kicks=60, intr=2,
                   host_resched=2)
    assert rescued.verdict.value == "PASS", case(rescued).detail


def test_a_stress_that_never_hit_the_window_is_inconclusive():
    r = race("kick-race-v1", window=3, pending=0, late=0, guest_nmis=500, self_nmis=0)
    assert r.verdict.value == "ERROR" and "window" in case(r).detail


def test_a_dedicated_kick_by_reschedule_ipi_fails():
    r = race("kick-race-v2", window=9, pending=4, late=0, guest_nmis=500, self_nmis=9, stock_ipis=1)
    assert r.verdict.value == "FAIL" and "reschedule IPI" in case(r).detail


def test_interrupt_exits_need_host_interrupts_on_that_cpu():
    ok = race("kick-race-v2", window=9, pending=4, late=0, guest_nmis=500, self_nmis=9, intr=3, host_resched=3)
    assert ok.verdict.value == "PASS", case(ok).detail
    bad = race("kick-race-v2", window=9, pending=4, late=0, guest_nmis=500, self_nmis=9, intr=4, host_resched=3)
    assert bad.verdict.value == "FAIL" and "at most the host interrupts" in case(bad).detail


def test_io_thread_kicks_stock_one_interrupt_exit_each():
    sc = scenario("kicks-io-thread")
    op = OpMeasurement("kicks", 16, {"interrupt": 16, "msr": 16}, reported={"count": 16, "irqs": 16})
    m = measurement([op], exits_all={"interrupt": 16, "msr": 16},
                    kick_trace=KickTrace(accepted=16, io_thread_msis=[1] * 16))
    assert verdict(sc, m).verdict.value == "PASS"
    m.kick_trace.io_thread_msis = [1] * 15
    assert verdict(sc, m).verdict.value == "ERROR"
    op.exits["interrupt"] = 15                      # a kick that made no exit: not stock behaviour
    m.kick_trace.io_thread_msis = [1] * 16
    assert verdict(sc, m).verdict.value == "FAIL"


def test_late_kicks_on_an_overloaded_host_are_inconclusive_not_a_fail():
    quiet = race("kick-race-v2", window=9, pending=4, late=3, guest_nmis=500, self_nmis=9)
    assert quiet.verdict.value == "FAIL"
    loaded = race("kick-race-v2", window=9, pending=4, late=3, guest_nmis=500, self_nmis=9, load=(5.2, 4.9))
    assert loaded.verdict.value == "ERROR" and "inconclusive" in case(loaded).detail
    # a count the clock does not decide still fails under load
    bad = race("kick-race-v2", window=9, pending=4, late=0, guest_nmis=500, self_nmis=8, load=(5.2, 4.9))
    assert bad.verdict.value == "FAIL"
