"""Model speed: predicting a 1,000,000-event mixed workload (closed form; target < 1 s) and
the discrete-event kick-race simulation's throughput in events per second.

    python bench/model_bench.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil.model import PROFILES, Operation, predict  # noqa: E402
from hil.model.race import simulate  # noqa: E402

MIX = {"cpuid": 0.2, "pio-kernel": 0.1, "pio-user": 0.1, "msr": 0.1, "hlt": 0.1, "timer": 0.1, "eoi": 0.1,
       "msi-assigned": 0.1, "kick": 0.05, "ipi": 0.05}


def main() -> None:
    total = 1_000_000
    ops = [Operation(e, int(total * w)) for e, w in MIX.items()]
    assert sum(o.count for o in ops) == total
    for profile in ("stock-2012", "stock-svm", "disable-exits", "slave-v1", "slave-v2"):
        for arch in PROFILES[profile].arches:
            t0 = time.perf_counter()
            pred = predict(ops, profile, arch)
            dt = time.perf_counter() - t0
            print(f"predict 1,000,000 mixed events  {profile:14s} {arch}: {dt * 1e3:7.3f} ms  "
                  f"(exits >= {pred.counters['exits'].low:,})")
    for profile in ("slave-v1", "slave-v2", "stock-2012"):
        t0 = time.perf_counter()
        stats = simulate(PROFILES[profile], 200_000, seed=1)
        dt = time.perf_counter() - t0
        print(f"kick-race simulation {profile:10s}: {stats.events / dt:,.0f} events/s  "
              f"({stats.kicks:,} kicks, {stats.lost:,} lost, exits {stats.exits})")


if __name__ == "__main__":
    main()
