"""The verdict layer on fake measurements (pure logic): PASS, FAIL and ERROR per case."""
from pathlib import Path

from hil.lab.measurement import Measurement, OpMeasurement
from hil.scenario import load_scenario
from hil.verdict import judge

ROOT = Path(__file__).resolve().parents[2]


def measurement(ops, counters=None, exits_all=None, stray=None):
    exits_all = exits_all if exits_all is not None else {"io": 100, "hlt": 3, "cpuid": 3}
    counters = counters if counters is not None else {"exits": sum(exits_all.values()), "io_exits": 100, "halt_exits": 3}
    return Measurement("svm", ops, exits_all, stray or {}, {}, {}, counters, [], "done", {}, {})


def small():
    return load_scenario("probe-counts-small", root=ROOT)


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
    case = next(c for c in r.cases if c.name == "cpuidx3")
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
