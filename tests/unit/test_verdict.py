"""The verdict layer on fake measurements (pure logic): PASS, FAIL and ERROR per case."""
from hil.measurement import OpMeasurement
from tests.unit.fakes import measurement, scenario, verdict


def small(*overrides):
    return scenario("probe-counts-small", *overrides)


def judge(sc, m):
    return verdict(sc, m)


def ok_ops(sc):
    per = {"cpuid": {"cpuid": 1}, "pio-kernel": {"io": 1}, "pio-user": {"io": 1}, "msr": {"msr": 1},
           "hlt": {"hlt": 1, "msr": 2}}
    return [OpMeasurement(o.op, o.count, {r: k * o.count for r, k in per[o.op].items()}) for o in sc.workload.ops]


def test_exact_match_passes_and_noise_is_allowed():
    sc = small()
    ops = ok_ops(sc)
    ops[0].exits["interrupt"] = 5        # ambient host interrupts: within 0..inf
    r = judge(sc, measurement(ops))
    assert r.verdict.value == "PASS", [(c.name, c.detail) for c in r.cases]


def test_one_exit_too_many_fails_naming_reason():
    sc = small()
    ops = ok_ops(sc)
    ops[0].exits["cpuid"] += 1
    r = judge(sc, measurement(ops))
    case = r.case("cpuid")
    assert r.verdict.value == "FAIL" and r.exit_code == 1
    assert case.detail == "cpuid: predicted 3, measured 4"


def test_unexpected_reason_fails():
    sc = small()
    ops = ok_ops(sc)
    ops[1].exits["npf"] = 1               # the model predicts no NPF in the window
    assert judge(sc, measurement(ops)).verdict.value == "FAIL"


def test_probe_that_did_not_run_an_op_is_an_error():
    sc = small()
    ops = ok_ops(sc)[:-1]
    r = judge(sc, measurement(ops))
    assert r.verdict.value == "ERROR" and r.exit_code == 2


def test_counter_disagreement_fails_the_cross_check():
    sc = small()
    r = judge(sc, measurement(ok_ops(sc), counters={"exits": 106, "io_exits": 99, "halt_exits": 3}))
    case = next(c for c in r.cases if c.name == "kvm-counters")
    assert case.verdict.value == "FAIL" and "io_exits" in case.detail


def test_a_missing_counter_is_an_error_not_a_fail():
    sc = small()
    r = judge(sc, measurement(ok_ops(sc), counters={"exits": 106, "io_exits": 100}))
    case = r.case("kvm-counters")
    assert case.verdict.value == "ERROR" and "halt_exits" in case.detail and r.exit_code == 2


def test_judged_reasons_still_catch_what_they_name():
    sc = small("expect.reasons=[cpuid]")
    ops = ok_ops(sc)
    ops[0].exits["cpuid"] += 1000
    ops[1].exits["npf"] = 77                # not judged: reported only
    r = judge(sc, measurement(ops))
    assert r.case("cpuid").verdict.value == "FAIL"
    assert r.case("pio-kernel").verdict.value == "PASS"
    assert not next(row for row in r.case("pio-kernel").rows if row.reason == "npf").judged


def test_foreign_kernel_without_bounds_says_it_judged_nothing(tmp_path):
    k = tmp_path / "k.elf"
    k.write_bytes(b"\x7fELF")
    r = judge(scenario("foreign-kernel", f"workload.kernel={k}"), measurement([]))
    assert r.case("whole-run").verdict.value == "SKIP" and "nothing to judge" in r.case("whole-run").detail
    assert r.verdict.value == "SKIP"


def test_a_measurement_of_another_arch_than_predicted_is_an_error():
    sc = small()
    from hil.scenario.prediction import predict_scenario
    from hil.verdict import judge as raw_judge
    r = raw_judge(sc, predict_scenario(sc, "svm"), measurement(ok_ops(sc), arch="vmx"))
    assert r.verdict.value == "ERROR"
