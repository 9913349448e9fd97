"""pytest plugin: a session-scoped lab (hil.runner.Runner) that boots each L1 topology once
and runs scenarios on it, so many tests share one boot; an L1 that died is booted again for
the next test. Tests skip with the reason when a capability is missing.

    def test_cpuid(hil_lab):
        result = hil_lab.run("probe-counts-small")
        assert result.case("cpuid").verdict == "PASS"
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil.paths import ROOT


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil")
    group.addoption("--hil-accel", default="auto", choices=("auto", "kvm", "tcg"), help="L1 accelerator")
    group.addoption("--hil-keep", action="store_true", help="keep every run's logs under the pytest tmp dir")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: boots the real nested QEMU/KVM stack")


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


class Lab:
    """Runs scenarios through one hil Runner (one L1 per topology, reused)."""

    def __init__(self, accel: str, tmp: Path):
        from hil.runner import Runner
        self.runner = Runner(accel=accel)
        self.tmp = tmp
        self.runs = 0

    def load(self, scenario: str, overrides: tuple[str, ...] = ()) -> Any:
        from hil.model import PROFILES
        from hil.scenario import load_scenario
        return load_scenario(scenario, root=ROOT, overrides=overrides, valid_profiles=PROFILES)

    def run(self, scenario: str, *overrides: str) -> LabRun:
        from hil.verdict import Verdict
        sc = self.load(scenario, overrides)
        self.runs += 1
        out = self.tmp / f"run{self.runs}-{sc.name}"
        result = self.runner.run(sc, out)
        if result.verdict is Verdict.SKIP and result.case("lab") is not None:
            pytest.skip(f"lab capability missing: {result.error}")
        return LabRun(sc, result, out, self.runner.last_measurement)

    def session(self, scenario: Any) -> tuple[Any, Any]:
        """The scenario topology's running L1 and its prepared images, for tests that talk to the agent."""
        return self.runner.l1_for(scenario, self.tmp / f"l1-{scenario.topology.name}")

    def close(self) -> None:
        self.runner.close()


@pytest.fixture(scope="session")
def hil_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (make setup)")
    lab = Lab(request.config.getoption("--hil-accel"), tmp_path_factory.mktemp("hil-lab"))
    try:
        yield lab
    finally:
        lab.close()
