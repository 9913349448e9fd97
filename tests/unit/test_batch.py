"""Batch runs with a fake runner (the lab is the integration suite's): selection by group,
topology order with one L1 per topology, the output tree, FLAKY detection and exit codes."""
import json
import xml.etree.ElementTree as ET

import pytest

from hil.batch import (Entry, batch_exit_code, flaky_cases, index_document, kernel_overrides, merged_junit,
                       order_by_topology, run_batch, select)
from hil.paths import ROOT
from hil.report import junit
from hil.scenario import ConfigError, load_scenario
from hil.verdict import RunResult, Verdict, error_result
from hil.verdict.judge import CaseResult, ReasonRow
from hil.model import Bound


def result(name, *verdicts, measured=16):
    cases = [CaseResult(f"case{i}", v, rows=[ReasonRow("cpuid", Bound(16, 16), measured, v is Verdict.PASS)])
             for i, v in enumerate(verdicts)]
    return RunResult(name, Verdict.worst(list(verdicts)), cases)


class FakeRunner:
    """Counts L1 boots the way hil.runner.Runner keeps them: one per topology until close()."""
    def __init__(self, script):
        self.script, self.live, self.boots, self.calls = script, set(), [], []
        self.stopped = False

    def run(self, sc, out):
        key = repr(sc.topology)
        if key not in self.live:
            self.live.add(key)
            self.boots.append(sc.topology.name)
        out.mkdir(parents=True, exist_ok=True)
        self.calls.append((sc.name, out))
        r = self.script[sc.name].pop(0)
        self.stopped = r.error.startswith("interrupted")     # what Runner does on a stop signal
        return r

    def close(self):
        self.live.clear()


def test_groups_smoke_and_nightly_are_defined():
    smoke = select([], "smoke", ROOT)
    assert smoke == ["probe-basic", "probe-counts-small"]
    nightly = select([], "nightly", ROOT)
    assert set(smoke) < set(nightly) and "kick-race-v2" in nightly and "foreign-kernel" not in nightly
    assert select(["probe-counts-large"], "smoke", ROOT) == ["probe-counts-large", *smoke]
    with pytest.raises(ConfigError, match=r"no scenario is in group 'nope' \(groups: .*smoke"):
        select([], "nope", ROOT)


def test_kernel_option_overrides_series_or_kernel_line():
    assert kernel_overrides("dedicated-cpu") == ["topology.l1.series=dedicated-cpu"]
    assert kernel_overrides("debian:linux-image-6.12") == ["topology.l1.kernel=debian:linux-image-6.12"]
    sc = load_scenario("probe-basic", root=ROOT, overrides=kernel_overrides("dedicated-cpu"))
    assert sc.topology.l1.series == "dedicated-cpu"


def test_one_l1_per_topology_and_one_output_tree(tmp_path):
    names = ["probe-basic", "probe-hlt-cpu-pm", "probe-counts-small"]
    scenarios = [load_scenario(n, root=ROOT) for n in names]
    assert [s.name for s in order_by_topology(scenarios)] == ["probe-basic", "probe-counts-small", "probe-hlt-cpu-pm"]
    runner = FakeRunner({n: [result(n, Verdict.PASS), result(n, Verdict.PASS)] for n in names})
    image = {"kernel_spec": "debian:linux-image-6.1", "kernel_package": "linux-image-6.1.0-57-amd64",
             "kernel_version": "6.1.192-3", "image_key": "k"}
    runner.script["probe-basic"][0].provenance = {"l1": {"image": image}}
    entries = run_batch(scenarios, tmp_path, runner, repeat=2)
    assert runner.boots == ["nested-svm", "nested-svm-cpu-pm"]       # probe-basic's L1 serves counts-small
    assert [c[1] for c in runner.calls[:2]] == [tmp_path / "probe-basic/r1", tmp_path / "probe-basic/r2"]
    doc = index_document(entries, tmp_path, repeat=2, kernel=None, elapsed=1.0, started="t")
    assert doc["exit_code"] == 0 and [s["verdict"] for s in doc["scenarios"]] == ["PASS"] * 3
    assert doc["scenarios"][0]["runs"][1]["dir"] == "probe-basic/r2"
    assert doc["scenarios"][0]["runs"][0]["kernel"] == {k: image[k] for k in ("kernel_spec", "kernel_package",
                                                                             "kernel_version")}
    assert doc["scenarios"][0]["runs"][1]["kernel"] is None        # an ERROR before L1: no kernel known
    json.dumps(doc)
    suites = ET.fromstring(merged_junit(entries, junit.render))
    assert len(suites) == 6 and suites.get("tests") == "6" and suites[1].get("name") == "hil.probe-basic.r2"


def test_a_case_that_changes_verdict_across_repeats_is_flaky_with_counts(tmp_path):
    runs = [result("p", Verdict.PASS, Verdict.PASS), result("p", Verdict.PASS, Verdict.FAIL, measured=17),
            result("p", Verdict.PASS, Verdict.PASS)]
    flaky = flaky_cases(runs)
    assert list(flaky) == ["case1"]
    assert flaky["case1"]["verdicts"] == {"FAIL": 1, "PASS": 2}
    assert [m["cpuid"] for m in flaky["case1"]["measured"]] == [16, 17, 16]
    e = Entry("p", "t", runs, ["a", "b", "c"], [1.0, 1.0, 1.0])
    assert batch_exit_code([e]) == 1
    steady_fail = Entry("q", "t", [result("q", Verdict.FAIL)] * 2, ["a", "b"], [1.0, 1.0])
    assert flaky_cases(steady_fail.results) == {} and batch_exit_code([steady_fail]) == 1


def test_exit_codes_of_a_batch():
    def e(*v):
        return Entry("x", "t", [result("x", x) for x in v], ["d"] * len(v), [0.0] * len(v))
    assert batch_exit_code([e(Verdict.PASS), e(Verdict.SKIP)]) == 0
    assert batch_exit_code([e(Verdict.SKIP)]) == 3
    assert batch_exit_code([e(Verdict.PASS), e(Verdict.ERROR), e(Verdict.FAIL)]) == 2


def test_cli_rejects_an_empty_batch_and_a_bad_repeat(tmp_path, capsys):
    from hil.cli import main
    assert main(["run", "--group", "nope", "--out", str(tmp_path)]) == 2
    assert "no scenario is in group 'nope'" in capsys.readouterr().err
    assert main(["run", "probe-basic", "--repeat", "0"]) == 2


def test_cli_batch_writes_the_whole_tree(tmp_path, monkeypatch):
    """hil run --group smoke --repeat 2 with a fake runner: per-run result, junit and report,
    then index.json, junit.xml and index.html over the batch."""
    import hil.runner
    from hil.cli import main
    script = {"probe-basic": [result("probe-basic", Verdict.PASS), result("probe-basic", Verdict.PASS)],
              "probe-counts-small": [result("probe-counts-small", Verdict.PASS),
                                     result("probe-counts-small", Verdict.FAIL, measured=17)]}
    fake = FakeRunner(script)
    fake.__enter__ = lambda: fake
    monkeypatch.setattr(hil.runner, "Runner", lambda **kw: type("R", (), {
        "__enter__": lambda self: fake, "__exit__": lambda self, *a: None})())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["run", "--group", "smoke", "--repeat", "2", "--out", str(out)]) == 1     # FLAKY
    index = json.loads((out / "index.json").read_text())
    assert [s["verdict"] for s in index["scenarios"]] == ["PASS", "FLAKY"]
    for d in ("probe-basic/r1", "probe-basic/r2", "probe-counts-small/r2"):
        assert {"result.json", "junit.xml", "report.html"} <= {p.name for p in (out / d).iterdir()}
    assert (out / "index.html").exists() and (out / "junit.xml").exists()


def test_a_stop_signal_ends_the_batch_after_the_run_it_stopped(tmp_path):
    names = ["probe-basic", "probe-counts-small", "probe-hlt-cpu-pm"]
    scenarios = [load_scenario(n, root=ROOT) for n in names]
    runner = FakeRunner({"probe-basic": [result("probe-basic", Verdict.PASS)] * 2,
                         "probe-counts-small": [error_result("probe-counts-small", "interrupted (signal SIGTERM)")],
                         "probe-hlt-cpu-pm": [result("probe-hlt-cpu-pm", Verdict.PASS)]})
    entries = run_batch(scenarios, tmp_path, runner, repeat=2)
    assert [c[0] for c in runner.calls] == ["probe-basic", "probe-basic", "probe-counts-small"]
    doc = index_document(entries, tmp_path, repeat=2, kernel=None, elapsed=1.0, started="t")
    assert doc["exit_code"] == 2 and [s["verdict"] for s in doc["scenarios"]] == ["PASS", "ERROR"]
