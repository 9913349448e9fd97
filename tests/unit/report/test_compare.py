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
