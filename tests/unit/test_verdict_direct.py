"""Direct-mode verdicts on fake measurements (pure logic): the dedicated-direct profile's kick
bounds (relayed MSIs: no exit, no EOI exit) and the L1 health case."""
from hil.lab import health
from hil.measurement import KickTrace, OpMeasurement
from hil.model import Bound
from hil.model.predict import predict_event
from tests.unit.fakes import measurement, scenario, verdict


def burst(*, exits=None, relays=16, forwards=0, irqs=16, health_=None):
    sc = scenario("direct-msi-burst")
    op = OpMeasurement("kicks", 16, exits or {}, reported={"count": 16, "irqs": irqs})
    trace = KickTrace(accepted=16, io_thread_msis=[1] * 16, series_traced=True, relays=relays, forwards=forwards)
    h = health_ if health_ is not None else health.health(True, "", [], 0)
    return verdict(sc, measurement([op], exits_all={"io": 10, **(exits or {})}, kick_trace=trace, l1_health=h))


def by_case(r):
    return {c.name: c for c in r.cases}


def test_relayed_msis_without_exits_pass():
    r = burst()
    assert r.verdict.value == "PASS", [(c.name, c.detail) for c in r.cases]


def test_an_eoi_exit_per_relayed_msi_fails():
    r = burst(exits={"msr": 16})
    assert r.verdict.value == "FAIL" and "EOI exits" in by_case(r)["kicks"].detail


def test_an_interrupt_exit_fails_and_so_does_an_msi_not_relayed():
    assert burst(exits={"interrupt": 1}).verdict.value == "FAIL"
    r = burst(relays=15)
    assert r.verdict.value == "FAIL" and "relayed" in by_case(r)["kicks"].detail


def test_a_forwarded_msi_traps_its_eoi_and_is_no_longer_exit_free():
    r = burst(forwards=1, exits={"msr": 1})
    assert r.verdict.value == "FAIL" and "root mode" in by_case(r)["kicks"].detail


def test_l1_health_fails_on_a_leak_a_stall_or_a_silent_agent():
    assert by_case(burst())["l1-health"].verdict.value == "PASS"
    leak = burst(health_=health.health(True, "", [], 2))
    assert by_case(leak)["l1-health"].verdict.value == "FAIL" and "kvm_dedicated_leak" in by_case(leak)["l1-health"].detail
    stall = burst(health_=health.health(True, "", ["rcu: INFO: rcu_sched self-detected stall on CPU"], 0))
    assert by_case(stall)["l1-health"].verdict.value == "FAIL"
    dead = burst(health_=health.health(False, "timeout", [], 0))
    assert by_case(dead)["l1-health"].verdict.value == "FAIL"


def test_console_problems_reads_only_from_the_run_start(tmp_path):
    log = tmp_path / "l1-console.log"
    log.write_text("[1.0] rcu: INFO: rcu_sched self-detected stall on CPU\n")
    start = log.stat().st_size
    with log.open("a") as f:
        f.write("[9.0] hil-agent: ready\n[9.5] csd: Detected non-responsive CSD lock (#1) on CPU#1\n"
                "[9.6] do_IRQ: 1.97 No irq handler for vector\n")
    assert health.console_problems(log, start) == ["[9.5] csd: Detected non-responsive CSD lock (#1) on CPU#1",
                                                   "[9.6] do_IRQ: 1.97 No irq handler for vector"]
    assert len(health.console_problems(log)) == 3
    assert health.console_problems(tmp_path / "missing.log") == []


def test_leaks_sum_every_vcpu():
    assert health.leaks({"direct_leaks": [{"vcpu_id": 0, "vector": 0xfd, "where": 0, "hitcount": 2},
                                          {"vcpu_id": -1, "vector": 0x50, "where": 1, "hitcount": 1}]}) == 3
    assert health.leaks({}) == 0


def test_model_assigned_msi_under_direct_delivery_is_exit_free_and_says_why():
    p = predict_event("dedicated-direct", "svm", "msi-assigned", 10)
    assert p.guest_interrupts == Bound.exactly(10) and "direct-retarget" in p.assumptions
    # no exit at all: the MSIs cost none, and the isolated CPU bounds the ambient host noise to 0,
    # an assumption the answer names (a stock CPU's ambient term stays 0..inf, named too)
    assert p.exits == {} and p.counters["exits"] == Bound.exactly(0)
    assert p.ambient == {} and "isolated-cpu-quiet" in p.ambient_assumptions
    assert "isolated-cpu-quiet" in p.assumptions
    stock = predict_event("stock-svm", "svm", "msi-assigned", 10)
    assert stock.ambient == {"interrupt": Bound(0, None)} and "ambient-host-interrupts" in stock.ambient_assumptions
    assert stock.exits["interrupt"] == Bound(10, None)


def test_hil_model_answers_0_exits_for_assigned_msis_on_the_direct_profile(capsys):
    import json
    from hil.model.cli import main
    argv = ["--profile", "dedicated-direct", "--arch", "svm", "--event", "msi-assigned", "--count", "10", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exits"] == {} and out["counters"] == {"exits": 0} and out["guest_interrupts"] == 10
    assert out["ambient"] == {"exits": {}, "assumptions": ["isolated-cpu-quiet", "one-vcpu-per-pcpu"]}
    assert {"direct-retarget", "isolated-cpu-quiet", "vcpu-resident"} <= set(out["assumptions"])
    assert main(argv[:-1]) == 0
    assert "ambient host noise: none (rests on: isolated-cpu-quiet" in capsys.readouterr().out


def test_the_edu_op_s_eoi_is_direct_only_where_its_msi_was():
    from hil.scenario.prediction import predict_op
    assert predict_op("dev-msi", 37, "dedicated-direct", "svm").exits.get("msr") is None
    assert predict_op("dev-msi", 37, "dedicated-v2", "svm").exits["msr"] == Bound.exactly(37)


def test_a_host_request_on_the_isolated_cpu_is_an_nmi_exit():
    p = predict_event("dedicated-direct", "svm", "host-ipi", 3, kind="call-function")
    assert p.exits == {"nmi": Bound.exactly(3)} and "host-work-by-nmi" in p.assumptions


def test_direct_mode_goes_to_vcpu_0_and_the_others_get_v2():
    from hil.lab.kernel.abi import DEDICATED_MODES
    from hil.lab.request import dedicate
    acts = dedicate(scenario("kick-race-direct").topology.l2)
    assert [(a.vcpu, a.arg) for a in acts] == [(0, DEDICATED_MODES["direct"]), (1, DEDICATED_MODES["v2"])]


def test_the_direct_mode_number_is_the_patch_s():
    from pathlib import Path
    from hil.lab.kernel.abi import DEDICATED_MODES
    patch = Path(__file__).parents[2] / "kernel_patches/dedicated-cpu-direct/0006-kvm-svm-dedicated-direct-delivery.patch"
    text = patch.read_text()
    assert "KVM_DEDICATED_V1, KVM_DEDICATED_DIRECT };" in text and DEDICATED_MODES["direct"] == 3


def test_every_nmi_exit_is_a_traced_kick_or_a_host_request_by_nmi():
    from hil.measurement import NmiLanding

    def run(deferred):
        sc = scenario("direct-msi-burst")
        op = OpMeasurement("kicks", 16, {"nmi": 6}, reported={"count": 16, "irqs": 16})
        trace = KickTrace(accepted=16, io_thread_msis=[1] * 16, series_traced=True, relays=16,
                          guest_nmis_all_vcpus=10, landed=[NmiLanding("guest", 10, 10, 0, 0)], deferred=deferred)
        return verdict(sc, measurement([op], exits_all={"io": 10, "nmi": 11}, kick_trace=trace,
                                       l1_health=health.health(True, "", [], 0)))
    assert run(1).verdict.value == "PASS"
    bad = run(0)
    assert bad.verdict.value == "FAIL" and "NMI exits" in by_case(bad)["kicks"].detail


def test_isr_read_from_qemu_info_lapic():
    text = "dumping local APIC state for CPU 1\n\nLVT0\t 0x00010700 active-hi edge  masked\nISR\t (none)\nIRR\t (none)\n"
    assert health.isr_in_service(text) == []
    assert health.isr_in_service(text.replace("ISR\t (none)", "ISR\t 50 60")) == ["50", "60"]
    assert health.isr_in_service("no apic here") is None
    stuck = burst(health_=health.health(True, "", [], 0, ["50"]))
    assert by_case(stuck)["l1-health"].verdict.value == "FAIL"


def edu_direct(n=37, *, exits=None, relays=0, forwards=0, guest_nmis=0, deferred=0, retargets=1, refused=0,
               host_irqs=0):
    """direct-vfio-edu's dev-msi op: the edu device's MSI IRTE pointed at vCPU 0's CPU (0010)."""
    from hil.lab.results import op_latency
    lat = [3000 + i for i in range(n)]
    op = OpMeasurement("dev-msi", n, exits or {}, 10**6, {"count": n, "irqs": n, "raised": n, "tsc_khz": 3_000_000},
                       {"lat": lat}, op_latency({"lat": lat}, 3_000_000))
    trace = KickTrace(series_traced=True, relays=relays, forwards=forwards, guest_nmis_all_vcpus=guest_nmis,
                      deferred=deferred, retargets=retargets, retarget_failures=refused)
    m = measurement([op], kick_trace=trace, l1_health=health.health(True, "", [], 0, []),
                    devices={"vfio-pci": {"host": {"host_irqs": {"total": host_irqs}}}})
    return verdict(scenario("direct-vfio-edu", f"workload.ops.0.count={n}"), m)


def test_edu_msis_retargeted_with_no_exit_pass_and_an_eoi_exit_fails():
    r = edu_direct()
    assert r.verdict.value == "PASS", [(c.name, c.detail) for c in r.cases]
    assert {"isolated-cpu-quiet", "direct-retarget"} <= set(r.case("dev-msi").extra["assumptions"])
    assert "msr: predicted 0, measured 37" in edu_direct(exits={"msr": 37}).case("dev-msi").detail
    assert "interrupt: predicted 0, measured 1" in edu_direct(exits={"interrupt": 1}).case("dev-msi").detail


def test_an_edu_msi_relayed_or_through_vfio_s_handler_fails_under_retargeting():
    # the relay (0006) still delivers with no exit, but the IRTE was meant to make it unneeded
    relayed = edu_direct(relays=37, host_irqs=37)
    assert relayed.verdict.value == "FAIL" and "kvm_dedicated_relay" in relayed.case("dev-msi").detail
    assert "vfio interrupts in L1" in relayed.case("dev-msi").detail
    assert "kvm_dedicated_retarget" in edu_direct(retargets=0).case("dev-msi").detail
    assert "ret != 0" in edu_direct(refused=1).case("dev-msi").detail


def test_an_edu_msi_taken_in_root_mode_without_a_host_request_fails():
    assert "kvm_dedicated_forward" in edu_direct(forwards=1).case("dev-msi").detail
    # raced a host request's exit: raised again at the next direct entry, no exit of its own
    assert edu_direct(forwards=1, exits={"nmi": 1}, guest_nmis=1).verdict.value == "PASS"


def test_nmi_exits_in_the_edu_op_only_as_many_as_the_host_requests_traced():
    assert edu_direct(exits={"nmi": 3}, guest_nmis=2, deferred=1).verdict.value == "PASS"
    bad = edu_direct(exits={"nmi": 3}, guest_nmis=2)
    assert bad.verdict.value == "FAIL" and "nmi: predicted 0..2, measured 3" in bad.case("dev-msi").detail


def test_a_vintr_exit_at_the_edu_op_s_sti_fails_even_beside_host_requests():
    """0011 closes a window with nothing to inject (the firmware's stale one measured at dev-msi's
    sti); no virtual interrupt is pending at that sti, so no host request excuses a vintr exit."""
    bad = edu_direct(n=203, exits={"vintr": 1})
    assert bad.verdict.value == "FAIL" and "vintr: predicted 0, measured 1" in bad.case("dev-msi").detail
    assert edu_direct(n=203, exits={"vintr": 1, "nmi": 1}, guest_nmis=1, deferred=2).verdict.value == "FAIL"
    assert "no-stale-window" in edu_direct(n=203).case("dev-msi").extra["assumptions"]


def timer_run(n=61, *, exits=None, guest_nmis=1, deferred=0):
    op = OpMeasurement("hlt", n, exits or {}, 10**6, {"count": n, "hlts": n})
    trace = KickTrace(series_traced=True, guest_nmis_all_vcpus=guest_nmis, deferred=deferred)
    m = measurement([OpMeasurement("cpuid", 6, {"cpuid": 6}, 10, {"count": 6}), op], kick_trace=trace,
                    l1_health=health.health(True, "", [], 0, []))
    return verdict(scenario("direct-timer", f"workload.ops.1.count={n}"), m)


def test_the_passed_through_timer_makes_no_exit_but_a_host_request_may_cost_one_trapped_eoi():
    assert timer_run().verdict.value == "PASS"
    assert timer_run(exits={"nmi": 1, "msr": 1}).verdict.value == "PASS"     # measured (dev build, 61 expiries)
    bad = timer_run(exits={"nmi": 1, "msr": 2})
    assert bad.verdict.value == "FAIL" and "msr: predicted 0..1, measured 2" in bad.case("hlt").detail
    assert "msr: predicted 0, measured 1" in timer_run(exits={"msr": 1}, guest_nmis=0).case("hlt").detail
    assert "interrupt: predicted 0, measured 1" in timer_run(exits={"interrupt": 1}).case("hlt").detail


def test_why_l1_kept_its_tick_on_the_direct_cpu_is_told_not_judged():
    hists = {"tick_stops": [{"common_cpu": 1, "success": 0, "dependency": 8, "hitcount": 40},
                            {"common_cpu": 1, "success": 0, "dependency": 0x14, "hitcount": 2},
                            {"common_cpu": 1, "success": 1, "dependency": 0, "hitcount": 7},
                            {"common_cpu": 0, "success": 0, "dependency": 4, "hitcount": 9}]}
    tick = health.tick_kept(hists, 1)
    assert tick == {"CLOCK_UNSTABLE": 40, "SCHED|RCU": 2, "stopped": 7}
    case = by_case(burst(health_=health.health(True, "", [], 0, tick=tick)))["l1-health"]
    assert case.verdict.value == "PASS"
    assert case.detail == "L1's tick could not stop on the direct CPU (tick_stop): CLOCK_UNSTABLE 40x, SCHED|RCU 2x"
    quiet = by_case(burst(health_=health.health(True, "", [], 0, tick={"stopped": 3})))["l1-health"]
    assert quiet.detail == ""

