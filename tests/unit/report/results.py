"""Results for the report tests: runs of shipped scenarios judged on fake measurements, and
two real result.json files the lab wrote (probe-basic and kicks-io-thread under TCG, kept in
data/ as written: schema_version 0, their log paths long gone)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hil.measurement import OpMeasurement
from hil.report import json as json_report
from hil.verdict import RunResult
from tests.unit.fakes import measurement, scenario, verdict

DATA = Path(__file__).with_name("data")
PER_OP = {"cpuid": {"cpuid": 1}, "pio-kernel": {"io": 1}, "pio-user": {"io": 1}, "msr": {"msr": 1},
          "hlt": {"hlt": 1, "msr": 2}}


def probe_result(*overrides: str, extra: dict[str, dict[str, int]] | None = None,
                 samples: dict[str, list[float]] | None = None) -> RunResult:
    """probe-basic judged on a measurement with exactly the predicted exits, plus `extra`
    exits per op (op -> reason -> n) and latency samples per op."""
    sc = scenario("probe-basic", *overrides)
    ops = []
    for o in sc.workload.ops:
        exits = {r: k * o.count for r, k in PER_OP[o.op].items()}
        for r, n in (extra or {}).get(o.op, {}).items():
            exits[r] = exits.get(r, 0) + n
        ops.append(OpMeasurement(o.op, o.count, exits, tsc=1000 * o.count))
    m = measurement(ops)
    m.timings = {"l2_workload": 2.0}
    m.provenance = {"accel": {"accel": "tcg", "reason": "requested"},
                    "l1": {"image": {"kernel_release": "6.1.0-56-amd64", "kernel_version": "6.1.192-2",
                                     "image_key": "1cda2b7a7afc8209d77fe7de"}}, "kernel_series": None}
    result = verdict(sc, m)
    for op in result.measurement.get("ops", []):
        if samples and op["op"] in samples:
            op["samples"] = {"lat": [int(v * 3) for v in samples[op["op"]]]}      # raw TSC stamps: not plotted
            op["latency"] = {"lat": stats(samples[op["op"]])}
    return result


def stats(values: list[float]) -> dict[str, Any]:
    """A latency summary in the lab's shape: order statistics and log2 ns buckets."""
    v = sorted(values)
    buckets: dict[int, int] = {}
    for x in v:
        buckets[int(x).bit_length()] = buckets.get(int(x).bit_length(), 0) + 1
    return {"n": len(v), "min": v[0], "p50": v[len(v) // 2], "p99": v[-1], "max": v[-1], "mean": sum(v) / len(v),
            "histogram": [{"lo_ns": float(1 << (b - 1)), "hi_ns": float(1 << b), "count": n}
                          for b, n in sorted(buckets.items())], "samples": [round(x) for x in values]}


def doc(result: RunResult, **extra: Any) -> dict[str, Any]:
    return json.loads(json.dumps(json_report.document(result, **extra), default=str))


def real(name: str) -> dict[str, Any]:
    """A real result document, loaded as hil loads one (schema_version 0)."""
    return json_report.load(DATA / f"{name}.result.json")
