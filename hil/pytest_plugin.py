"""pytest plugin: a session-scoped lab that boots each L1 topology once and runs scenarios
on it, so many tests share one boot. Tests skip with the reason when a capability is missing.

    def test_cpuid(hil_lab):
        result = hil_lab.run("probe-counts-small")
        assert result.case("cpuidx3").verdict == "PASS"
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil.cli import ROOT


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil")
    group.addoption("--hil-accel", default="auto", choices=("auto", "kvm", "tcg"), help="L1 accelerator")
    group.addoption("--hil-keep", action="store_true", help="keep every run's logs under the pytest tmp dir")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: boots the real nested QEMU/KVM stack")


@dataclass
class LabRun:
    scenario: Any
    measurement: Any
    result: Any
    out_dir: Path

    def case(self, name: str) -> Any:
        return next(c for c in self.result.cases if c.name == name)


class Lab:
    """Boots L1 per topology on first use; later runs of that topology reuse the boot."""

    def __init__(self, accel: str, tmp: Path):
        self.accel = accel
        self.tmp = tmp
        self.sessions: dict[str, Any] = {}
        self.prepared: dict[str, Any] = {}
        self.runs = 0

    def load(self, scenario: str, overrides: tuple[str, ...] = ()) -> Any:
        from hil.model import PROFILES
        from hil.scenario import load_scenario
        return load_scenario(scenario, root=ROOT, overrides=overrides, valid_profiles=PROFILES)

    def session(self, scenario: Any) -> tuple[Any, Any]:
        from hil.lab.errors import CapabilityMissing
        from hil.lab.l1 import L1Session
        from hil.lab.run import l1_builder, prepare, snapshot_path
        topo = scenario.topology
        key = topo.name
        if key not in self.sessions:
            try:
                prep = prepare(topo, True, self.accel)
            except CapabilityMissing as e:     # a broken lab is an error, not a skip
                pytest.skip(f"lab capability missing: {e}")
            log_dir = self.tmp / f"l1-{key}"
            session = L1Session(l1_builder(topo, prep.image, prep.accel.accel), log_dir=log_dir,
                                boot_timeout=topo.l1.boot_timeout,
                                snapshot=snapshot_path(topo, prep.image, prep.accel.accel))
            session.start()
            self.sessions[key], self.prepared[key] = session, prep
        return self.sessions[key], self.prepared[key]

    def run(self, scenario: str, *overrides: str) -> LabRun:
        from hil.lab.errors import CapabilityMissing
        from hil.lab.run import run_scenario
        from hil.verdict import judge
        sc = self.load(scenario, overrides)
        session, prep = self.session(sc)
        self.runs += 1
        out = self.tmp / f"run{self.runs}-{sc.name}"
        try:
            m = run_scenario(sc, out, session=session, prepared=prep)
        except CapabilityMissing as e:
            pytest.skip(f"lab capability missing: {e}")
        return LabRun(sc, m, judge(sc, m), out)

    def close(self) -> None:
        for s in self.sessions.values():
            s.close()
        self.sessions.clear()


@pytest.fixture(scope="session")
def hil_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (make setup)")
    lab = Lab(request.config.getoption("--hil-accel"), tmp_path_factory.mktemp("hil-lab"))
    try:
        yield lab
    finally:
        lab.close()
