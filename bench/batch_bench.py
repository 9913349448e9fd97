"""A batch of ten probe runs on one topology against the work they cannot avoid.

    python bench/batch_bench.py [--scenarios probe-basic probe-counts-small] [--repeat 5] [--runs 3]

One `hil run A B --repeat N` (len(scenarios) * N runs, one L1 restored once and shared) is
timed end to end on the warm cache (a warm-up run fills it first). Its floor is the sum of
each run's workload time plus one L1 restore, both read from the runs' own result.json:
  workload = timings.l2_run: the agent's run_l2 request, i.e. L2's QEMU started in L1, the
             payload run, the counters and hists read, QEMU stopped (what a run is);
  restore  = timings.l1_boot of the batch (the one L1 start all runs share).
The figure printed also splits the workload into L2's QEMU start-up and the payload itself.
Target (issue 15): batch wall <= 1.3 x (sum of workloads + one restore).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.3


def hil(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HIL_ROOT=str(ROOT))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hil.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    return time.monotonic() - t0, proc


def results(out: Path) -> list[dict]:
    index = json.loads((out / "index.json").read_text())
    docs = []
    for sc in index["scenarios"]:
        for run in sc["runs"]:
            docs.append(json.loads((out / run["dir"] / "result.json").read_text()))
    return docs


def fmt(values: list[float], unit: str = " s", digits: int = 2) -> str:
    return (f"min {min(values):.{digits}f}{unit}  median {statistics.median(values):.{digits}f}{unit}  "
            f"max {max(values):.{digits}f}{unit}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", nargs="+", default=["probe-basic", "probe-counts-small"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="batches timed (after one warm-up)")
    args = ap.parse_args()
    n = len(args.scenarios) * args.repeat
    print(f"host load before: {os.getloadavg()[0]:.2f} (nproc {os.cpu_count()})")
    with tempfile.TemporaryDirectory(prefix="hil-batch-bench-") as tmp:
        _, warm = hil("run", args.scenarios[0], "--accel", "tcg", "--out", f"{tmp}/warm")
        if warm.returncode != 0:
            sys.exit(f"warm-up failed ({warm.returncode}):\n{warm.stdout}\n{warm.stderr}")
        walls, floors, ratios = [], [], []
        for i in range(args.runs):
            out = Path(tmp) / f"batch{i}"
            wall, proc = hil("run", *args.scenarios, "--repeat", str(args.repeat), "--accel", "tcg",
                             "--out", str(out))
            if proc.returncode != 0:
                sys.exit(f"batch failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            docs = results(out)
            assert len(docs) == n, f"{len(docs)} results, expected {n}"
            t = [d["measurement"]["timings"] for d in docs]
            restores = [x["l1_boot"] for x in t if "l1_boot" in x]
            workload = sum(x["l2_run"] for x in t)
            floor = workload + restores[0]
            walls.append(wall)
            floors.append(floor)
            ratios.append(wall / floor)
            print(f"batch {i}: {n} runs, wall {wall:.1f} s; sum of workloads {workload:.1f} s "
                  f"(L2 QEMU start {sum(x.get('l2_qemu_up', 0) for x in t):.1f} s, payload "
                  f"{sum(x.get('l2_workload', 0) for x in t):.1f} s) + one L1 restore {restores[0]:.2f} s "
                  f"= {floor:.1f} s; ratio {wall / floor:.3f}; L1 starts in the batch: {len(set(map(str, restores)))}; "
                  f"verdicts {sorted({d['verdict'] for d in docs})}")
        print(f"batch wall:            {fmt(walls, digits=1)}")
        print(f"workloads + 1 restore: {fmt(floors, digits=1)}")
        print(f"ratio:                 {fmt(ratios, unit='', digits=3)}   (target <= {TARGET})"
              f"  -> {'MET' if statistics.median(ratios) <= TARGET else 'NOT MET'}")
    print(f"host load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
