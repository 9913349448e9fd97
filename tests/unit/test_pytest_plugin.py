"""The pytest plugin on a fake lab (pytester, in process): scenarios parametrize tests and their
groups are markers; each run records its verdicts with record_property and keeps result.json and
report.html under --hil-out; the test whose run lost L1 is ERROR and the next test runs on a new
L1; a missing capability skips with hil's reason; runs that passed are deleted unless --hil-keep."""
import xml.etree.ElementTree as ET

import pytest

import hil.report.plots  # noqa: F401  (numpy loads once per process: before pytester's module snapshots)
from hil.pytest_plugin import Lab
from hil.verdict import error_result, skip_result
from tests.unit.report.results import probe_result

pytest_plugins = ["pytester"]

TESTS = '''
import pytest

@pytest.mark.hil_scenarios("probe-basic", "probe-counts-small")
def test_passes(hil_result):
    assert hil_result.result.verdict.value == "PASS"

def test_direct(hil_lab):
    run = hil_lab.run("probe-basic")
    assert run.case("cpuid").verdict.value == "PASS"

def test_lab_breaks_in_the_body(hil_lab):
    hil_lab.run("probe-basic")

@pytest.mark.hil_scenarios(group="demo")
def test_group(hil_scenario):
    assert hil_scenario == "probe-basic"
'''


class FakeRunner:
    """Outcomes in order: the first run loses its L1 (ERROR), then a new L1 is booted."""
    script: list[str] = []

    def __init__(self, accel):
        self.boots = 0
        self.alive = False
        self.last_measurement = None
        self.stopped = False

    def run(self, sc, out):
        if not self.alive:
            self.boots += 1
            self.alive = True
        outcome = type(self).script.pop(0) if type(self).script else "pass"
        if outcome == "error":
            self.alive = False
            return error_result(sc.name, f"L1 of {sc.topology.name} died (QEMU exit code -9); boot {self.boots}")
        if outcome == "skip":
            return skip_result(sc.name, "no /dev/kvm and TCG refused")
        if outcome == "stop":               # Ctrl-C during the run: what Runner makes of it
            self.stopped = True
            return error_result(sc.name, "interrupted (signal SIGINT)")
        r = probe_result()
        r.scenario = sc.name
        return r

    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(Lab, "runner_factory", staticmethod(FakeRunner))
    return FakeRunner


def test_results_markers_properties_and_errors(pytester, fake, tmp_path):
    fake.script = ["error", "pass", "skip", "error"]
    pytester.makepyfile(TESTS)
    out = tmp_path / "hil-out"
    result = pytester.runpytest("-rs", f"--hil-out={out}", f"--junitxml={tmp_path / 'j.xml'}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=2, skipped=1)
    for line in ("*ERROR at setup of test_passes?probe-basic?*", "*SKIPPED*probe-basic: no /dev/kvm and TCG refused*",
                 "hil: 4 runs under*every run kept*", "*ERROR at call of test_lab_breaks_in_the_body*"):
        result.stdout.fnmatch_lines([line])
    assert "L1 of nested-svm died" in result.stdout.str()
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_passes[probe-counts-small]"].iter("property")}
    assert props["hil.verdict"] == "PASS" and props["hil.scenario"] == "probe-counts-small"
    assert props["hil.cpuid.cpuid.measured"] == "16" and props["hil.cpuid.cpuid.predicted"] == "16"
    kept = sorted(p.relative_to(out).parts[-2] for p in out.rglob("report.html"))
    assert kept == ["run1-probe-basic", "run2-probe-counts-small", "run3-probe-basic", "run4-probe-basic"]
    assert all((p.parent / "result.json").is_file() for p in out.rglob("report.html"))


def test_ctrl_c_in_a_run_stops_the_session(pytester, fake):
    fake.script = ["pass", "stop", "pass"]
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_passes", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*", "*interrupted (signal SIGINT)*", "*1 passed*"])
    assert fake.script == ["pass"]                        # the run after it never started


def test_groups_are_markers(pytester, fake):
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-m", "demo", "--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*test_passes[[]probe-basic[]]", "*test_group[[]probe-basic[]]"])
    assert "probe-counts-small" not in result.stdout.str()
    assert "counts" in pytester.runpytest("--markers").stdout.str()


@pytest.mark.parametrize("keep", [False, True])
def test_runs_that_passed_are_deleted_unless_kept(pytester, fake, keep):
    fake.script = ["error", "pass"]
    pytester.makepyfile(TESTS)
    base = pytester.path / "base"
    args = [f"--basetemp={base}", "-p", "no:cacheprovider", "-k", "test_passes"] + (["--hil-keep"] if keep else [])
    pytester.runpytest(*args).assert_outcomes(passed=1, errors=1)
    dirs = sorted(p.name for p in base.rglob("run*-*") if p.is_dir())
    assert dirs == (["run1-probe-basic", "run2-probe-counts-small"] if keep else ["run1-probe-basic"])
