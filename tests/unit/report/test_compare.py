"""hil compare: same runs exit 0; a changed count the model predicts exactly exits 1 naming the
scenario, case and reason (so `git bisect run` can drive it); noise within bounds is shown but
not a regression; a run that could not be compared exits 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.report.compare import Tolerance, compare, load_side
from hil.report.json import write
from hil.verdict import error_result
from tests.unit.report.results import doc, probe_result

ROOT = Path(__file__).resolve().parents[3]


def side(*results):
    return {r.scenario: doc(r) for r in results}


def test_the_same_run_twice_is_the_same():
    c = compare(side(probe_result()), side(probe_result()))
    assert c.exit_code == 0 and c.regressions == [] and all(d.delta == 0 for d in c.deltas)


def test_a_changed_exact_count_is_a_regression_naming_case_and_reason():
    c = compare(side(probe_result()), side(probe_result(extra={"msr": {"msr": 1}})))
    assert c.exit_code == 1
    assert [(d.scenario, d.case, d.reason, d.a, d.b) for d in c.regressions] == [("probe-basic", "msr", "msr", 16, 17)]
    assert set(c.regressions[0].marks) == {"changed-exact", "outside-bounds"}


def test_noise_within_the_bounds_is_shown_not_a_regression_until_a_tolerance_says_so():
    a, b = side(probe_result()), side(probe_result(extra={"cpuid": {"interrupt": 5}}))
    c = compare(a, b)
    noisy = next(d for d in c.deltas if (d.case, d.reason) == ("cpuid", "interrupt"))
    assert noisy.delta == 5 and noisy.marks == [] and not noisy.deterministic and c.exit_code == 0
    assert compare(a, b, Tolerance.parse("5")).exit_code == 0
    c = compare(a, b, Tolerance.parse("4"))
    assert c.exit_code == 1 and c.regressions[0].marks == ["over-tolerance"]


def test_kvm_counters_differ_between_runs_and_are_not_exact_predictions():
    a = probe_result()
    b = probe_result()
    b.cases[-1].rows[0].predicted = type(b.cases[-1].rows[0].predicted).exactly(999)
    b.cases[-1].rows[0].measured = 999
    c = compare(side(a), side(b))
    assert c.exit_code == 0


def test_a_changed_count_in_the_scenario_changes_exact_counts_and_says_why():
    c = compare(side(probe_result()), side(probe_result("workload.ops.0.count=32")))
    assert c.exit_code == 1
    reg = [(d.case, d.reason, d.a, d.b) for d in c.regressions]
    assert reg == [("cpuid", "cpuid", 16, 32)]
    assert "prediction-changed" in c.regressions[0].marks


def test_an_errored_side_cannot_be_compared():
    c = compare(side(probe_result()), side(error_result("probe-basic", "L1 did not boot")))
    assert c.exit_code == 2 and "L1 did not boot" in c.incomparable[0]


@pytest.mark.parametrize("text,a,b,ok", [("10%", 100, 110, True), ("10%", 100, 111, False), ("0", 3, 3, True)])
def test_tolerance(text, a, b, ok):
    assert Tolerance.parse(text).allows(a, b) is ok


@pytest.mark.parametrize("text", ["-1", "x", "-5%"])
def test_a_bad_tolerance_is_refused(text):
    with pytest.raises(ValueError, match="--tolerance"):
        Tolerance.parse(text)


def hil(*args):
    return subprocess.run([sys.executable, "-m", "hil.cli", "compare", *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_the_cli_on_directories_with_json_and_html(tmp_path):
    for night, extra in (("a", None), ("b", {"hlt": {"hlt": 1}})):
        for r in (probe_result(extra=extra), probe_result("workload.ops=[{op: cpuid, count: 4}]")):
            d = tmp_path / night / (r.scenario + str(len(r.cases)))
            d.mkdir(parents=True)
            r.scenario = f"{r.scenario}-{len(r.cases)}"
            write(d / "result.json", r)
    assert set(load_side(tmp_path / "a")) == {"probe-basic-7", "probe-basic-3"}
    proc = hil(str(tmp_path / "a"), str(tmp_path / "b"), "--json", "-", "--html", str(tmp_path / "c.html"))
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["regressions"] == ["probe-basic-7/hlt/hlt"] and out["exit_code"] == 1
    assert "REGRESSION probe-basic-7 case hlt reason hlt: an exact count changed (A 8, B 9" in proc.stderr
    assert "REGRESSION" in (tmp_path / "c.html").read_text()
    same = hil(str(tmp_path / "a"), str(tmp_path / "a"))
    assert same.returncode == 0 and "result: SAME" in same.stdout


def test_the_cli_names_a_missing_file(tmp_path):
    proc = hil(str(tmp_path / "nope.json"), str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"hil: {tmp_path / 'nope.json'}: no such file or directory"


def latency_doc(scenario, profile, nominal_ns, p50_ns, khz=2_500_000):
    """A result with one judged latency case, as the verdict writes it."""
    return {"scenario": scenario, "profile": profile, "verdict": "PASS", "error": "",
            "cases": [{"name": "dev-msi latency", "verdict": "PASS", "detail": "",
                       "rows": [{"reason": "p50 ns", "predicted": {"low": 1, "high": None}, "measured": p50_ns,
                                 "ok": True}],
                       "extra": {"op": "dev-msi", "band_ns": {"nominal": nominal_ns * 2_500_000 / khz},
                                 "band_cycles": {"nominal": round(nominal_ns * 2.5)}}}]}


@pytest.mark.parametrize("stock_p50,dedicated_p50,held", [
    (80_000, 57_000, True),        # dedicated faster, as the model says
    (80_000, 150_000, True),       # slower, but within the band's 2x drift
    (80_000, 170_000, False),      # slower by more than the drift: the order is broken
])
def test_latency_order_between_two_profiles(stock_p50, dedicated_p50, held):
    a = {"device-edu-msi": latency_doc("device-edu-msi", "stock-svm", 82_000, stock_p50)}
    b = {"device-edu-msi-dedicated": latency_doc("device-edu-msi-dedicated", "dedicated-v2", 36_000, dedicated_p50)}
    c = compare(a, b, latency_order=True)
    assert [o.ok for o in c.orders] == [held]
    assert c.exit_code == (0 if held else 1)          # the two scenarios paired: neither is "only on one side"
    assert ("held" if held else "BROKEN") in c.orders[0].text() and "model B < A" in c.orders[0].text()
    # the other way round the model predicts A no slower: the same measured pair, judged from B's side
    back = compare(b, a, latency_order=True)
    assert back.orders[0].ok == held
    assert compare(a, b).orders is None and compare(a, b).exit_code == 2


def test_latency_order_with_no_judged_latency_is_incomparable():
    a = {"x": latency_doc("x", "stock-svm", 1, 1)}
    a["x"]["cases"][0]["extra"] = {}
    c = compare(a, a, latency_order=True)
    assert c.orders == [] and c.exit_code == 2


def test_the_same_path_predicted_on_both_sides_holds_neither_slower_by_more_than_the_drift():
    # disable-exits and stock: the same path for an edu MSI; each run's TSC rate differs, so the
    # ns figures do, the cycles do not
    stock = {"device-edu-msi": latency_doc("device-edu-msi", "stock-svm", 126_800, 152_700, khz=2_530_000)}
    for p50, held in ((100_000, True), (60_800, False)):
        other = {"edu-cpu-pm": latency_doc("edu-cpu-pm", "disable-exits", 126_800, p50, khz=2_550_000)}
        for a, b in ((stock, other), (other, stock)):
            c = compare(a, b, latency_order=True)
            assert [o.ok for o in c.orders] == [held] and "model B == A" in c.orders[0].text()
