"""Fakes for the pure-logic tests: a Measurement built by keyword, and the verdict of a
shipped scenario on it (predicted for svm, as the lab's L1 has)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.measurement import KickTrace, Measurement, OpMeasurement
from hil.model import PROFILES
from hil.scenario import Scenario, load_scenario
from hil.scenario.prediction import predict_scenario
from hil.verdict import RunResult, judge

ROOT = Path(__file__).resolve().parents[2]


def scenario(name: str, *overrides: str) -> Scenario:
    return load_scenario(name, root=ROOT, overrides=list(overrides), valid_profiles=PROFILES)


def measurement(ops: list[OpMeasurement], *, exits_all: dict[str, int] | None = None,
                counters: dict[str, int] | None = None, outside: dict[str, int] | None = None,
                kick_trace: KickTrace | None = None, arch: str = "svm", **kw: Any) -> Measurement:
    exits_all = exits_all if exits_all is not None else {"io": 100, "hlt": 3, "cpuid": 3}
    if counters is None:
        counters = {"exits": sum(exits_all.values()), "io_exits": exits_all.get("io", 0),
                    "halt_exits": exits_all.get("hlt", 0)}
    return Measurement(arch, ops, exits_all, outside or {}, {}, {}, counters, [], "done", {}, {},
                       kick_trace=kick_trace or KickTrace(), **kw)


def verdict(sc: Scenario, m: Measurement) -> RunResult:
    return judge(sc, predict_scenario(sc, m.arch), m)
