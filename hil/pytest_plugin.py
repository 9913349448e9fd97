"""pytest plugin: a session-scoped lab (hil.runner.Runner) that boots each L1 topology once
and runs scenarios on it, so many tests share one boot; an L1 that died is booted again for
the next test, and the test that lost it is ERROR. Skips carry hil's reason.

    def test_cpuid(hil_lab):
        run = hil_lab.run("probe-counts-small")
        assert run.case("cpuid").verdict == "PASS"

    @pytest.mark.hil_scenarios(group="demo")       # or ("probe-basic", ...); none: every scenario
    def test_passes(hil_result):                   # one test per scenario, run during setup
        assert hil_result.result.verdict == "PASS"

Each scenario's groups are markers (`pytest -m demo`), with `lab`. Every run keeps
result.json, report.html and junit.xml in its directory under --hil-out (default: pytest's
temporary directory) and records its verdicts and counts with record_property. Without
--hil-keep, the directories of runs that passed are deleted at the end of the session;
with it, every run's logs and the L1 logs stay.
"""
from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil.paths import ROOT

_ITEM = pytest.StashKey[pytest.Item]()
_LAB = pytest.StashKey["Lab"]()


class LabBroken(Exception):
    """The lab broke during a test (L1 died, a command failed): the test is ERROR, not FAIL."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil")
    group.addoption("--hil-accel", default="auto", choices=("auto", "kvm", "tcg"), help="L1 accelerator")
    group.addoption("--hil-out", metavar="DIR", default=None,
                    help="keep each run's result.json, report.html, junit.xml and logs under DIR")
    group.addoption("--hil-keep", action="store_true",
                    help="keep every run's directory and the L1 logs, also of runs that passed")


@functools.cache
def _scenario_groups() -> dict[str, list[str]]:
    """scenario -> its groups, read cheaply (this runs in every pytest session with hil installed)."""
    from hil.scenario import list_scenarios
    from hil.scenario.yamlsrc import load_yaml
    out = {}
    for name in list_scenarios(ROOT):
        try:
            data = load_yaml(ROOT / "qemu_configs" / "scenarios" / f"{name}.yaml").data
            groups = data.get("groups") if isinstance(data, dict) else None
        except Exception:        # a broken scenario file is reported when it is run, not here
            groups = None
        out[name] = [g for g in groups if isinstance(g, str) and re.fullmatch(r"[A-Za-z_][\w-]*", g)] \
            if isinstance(groups, list) else ["default"]
    return out


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: boots the real nested QEMU/KVM stack")
    config.addinivalue_line("markers", "hil_scenarios(*names, group=None): parametrize the test's hil_scenario "
                            "argument over these scenarios (none given: the group's, or every one)")
    for group in sorted({g for gs in _scenario_groups().values() for g in gs}):
        config.addinivalue_line("markers", f"{group}: hil scenarios of group {group}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hil_scenario" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("hil_scenarios")
    groups = _scenario_groups()
    names = list(marker.args) if marker and marker.args else sorted(groups)
    group = marker.kwargs.get("group") if marker else None
    if group is not None:
        names = [n for n in names if group in groups.get(n, [])]
        if not names:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: no scenario in group {group!r}")
    params = [pytest.param(n, id=n, marks=[pytest.mark.lab, *(getattr(pytest.mark, g) for g in groups.get(n, []))])
              for n in names]
    metafunc.parametrize("hil_scenario", params)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.config.stash[_ITEM] = item


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(LabBroken):
        report.hil_lab_broken = True
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if getattr(report, "hil_lab_broken", False) and report.failed:
        return "error", "E", "ERROR"
    return None


@dataclass
class LabRun:
    scenario: Any
    result: Any
    out_dir: Path
    measurement: Any = None      # hil.measurement.Measurement, when the run got that far

    def case(self, name: str) -> Any:
        found = self.result.case(name)
        if found is None:
            raise KeyError(f"no case {name!r} in {self.scenario.name}: "
                           f"{[c.name for c in self.result.cases]}\n{self.summary()}")
        return found

    def summary(self) -> str:
        from hil.report import text
        return text.render(self.result)


def _default_runner(accel: str) -> Any:
    from hil.runner import Runner
    return Runner(accel=accel)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")[:120] or "run"


class Lab:
    """Runs scenarios through one hil Runner (one L1 per topology, reused)."""
    runner_factory: Callable[[str], Any] = staticmethod(_default_runner)

    def __init__(self, accel: str, out: Path, config: pytest.Config | None = None, keep: bool = False):
        self.runner = type(self).runner_factory(accel)
        self.tmp = out
        self.config = config
        self.keep = keep
        self.runs = 0
        self.passed_dirs: list[Path] = []

    def load(self, scenario: str, overrides: tuple[str, ...] = ()) -> Any:
        from hil.model import PROFILES
        from hil.scenario import load_scenario
        return load_scenario(scenario, root=ROOT, overrides=overrides, valid_profiles=PROFILES)

    def _item(self) -> pytest.Item | None:
        return self.config.stash.get(_ITEM, None) if self.config is not None else None

    def run(self, scenario: str, *overrides: str, lab_errors: bool = False) -> LabRun:
        """Run one scenario. A missing capability skips the test with hil's reason; a broken lab
        raises LabBroken (the test is ERROR) unless lab_errors=True returns the ERROR result."""
        from hil.verdict import Verdict
        sc = self.load(scenario, overrides)
        self.runs += 1
        item = self._item()
        where = _safe(item.nodeid) if item is not None else "session"
        out = self.tmp / where / f"run{self.runs}-{sc.name}"
        result = self.runner.run(sc, out)
        doc = self._write(out, result)
        self._record(result, out, doc)
        if self.runner.stopped:    # Ctrl-C (the runner made it this run's ERROR): the session stops too
            raise KeyboardInterrupt(result.error)
        if result.verdict is Verdict.PASS:
            self.passed_dirs.append(out)
        lab_case = result.case("lab")
        if result.verdict is Verdict.SKIP and lab_case is not None:
            pytest.skip(f"{sc.name}: {result.error}")
        if result.verdict is Verdict.ERROR and lab_case is not None and not lab_errors:
            raise LabBroken(f"{sc.name}: the lab broke: {result.error} (logs in {out})")
        return LabRun(sc, result, out, getattr(self.runner, "last_measurement", None))

    def _write(self, out: Path, result: Any) -> dict[str, Any]:
        from hil.report import html, json as json_report, junit
        out.mkdir(parents=True, exist_ok=True)
        doc = json_report.document(result)
        json_report.write_text(out / "result.json", json.dumps(doc, indent=2, default=str))
        (out / "junit.xml").write_text(junit.render(doc))
        try:
            html.write(out / "report.html", doc)
        except Exception as e:        # a plotting bug must not turn the test's verdict into a crash
            import logging
            logging.getLogger(__name__).warning("report.html not written: %s: %s", type(e).__name__, e)
        return doc

    def _record(self, result: Any, out: Path, doc: dict[str, Any]) -> None:
        item = self._item()
        if item is None:
            return
        props = [("hil.scenario", result.scenario), ("hil.verdict", result.verdict.value),
                 ("hil.report", str(out / "report.html"))]
        if result.error:
            props.append(("hil.error", result.error))
        for case in result.cases:
            props.append((f"hil.{case.name}.verdict", case.verdict.value))
            for row in doc_rows(doc, case.name):
                props.append((f"hil.{case.name}.{row['reason']}.measured", row["measured"]))
                props.append((f"hil.{case.name}.{row['reason']}.predicted", row["predicted_text"]))
        item.user_properties.extend(props)

    def session(self, scenario: Any) -> tuple[Any, Any]:
        """The scenario topology's running L1 and its prepared images, for tests that talk to the agent."""
        return self.runner.l1_for(scenario, self.tmp / f"l1-{scenario.topology.name}")

    def close(self) -> None:
        self.runner.close()
        if not self.keep:
            for d in self.passed_dirs:
                shutil.rmtree(d, ignore_errors=True)


def doc_rows(doc: dict[str, Any], case: str) -> list[dict[str, Any]]:
    return next((c["rows"] for c in doc["cases"] if c["name"] == case), [])


@pytest.fixture(scope="session")
def hil_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    config = request.config
    if Lab.runner_factory is _default_runner and shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (make setup)")
    out_opt = config.getoption("--hil-out")
    out = Path(out_opt) if out_opt else tmp_path_factory.mktemp("hil-lab")
    out.mkdir(parents=True, exist_ok=True)
    # a run's directory under --hil-out is kept (that is what it is for); --hil-keep keeps them anywhere
    lab = Lab(config.getoption("--hil-accel"), out, config, keep=bool(out_opt) or config.getoption("--hil-keep"))
    config.stash[_LAB] = lab
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def hil_result(hil_lab: Lab, hil_scenario: str) -> LabRun:
    """The run of this test's scenario (see hil_scenarios), made during setup: a broken lab is ERROR."""
    return hil_lab.run(hil_scenario)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lab = config.stash.get(_LAB, None)
    if lab is not None and lab.runs:
        kept = "every run kept" if lab.keep else "runs that passed deleted (--hil-keep keeps them)"
        terminalreporter.write_line(f"hil: {lab.runs} runs under {lab.tmp} ({kept})")
