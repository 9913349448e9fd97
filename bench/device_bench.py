"""Interrupts through each device path of the lab, measured in one session per topology:
interrupts per second (guest-side, from the op's TSC time), exits per interrupt by reason,
and the request -> handler latency (p50/p99) per path.

    python bench/device_bench.py [--count 64] [--accel tcg] [--profile auto]

Paths: VFIO edu (dev-msi, dev-dma), virtio-net receive and transmit with QEMU's backend and
with vhost-net. Run it under the lab lock: it boots the nested stack.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil.model import PROFILES  # noqa: E402
from hil.runner import Runner  # noqa: E402
from hil.scenario import load_scenario  # noqa: E402

PATHS = (("VFIO edu MSI", "device-edu-msi", "dev-msi"), ("VFIO edu DMA", "device-edu-dma", "dev-dma"),
         ("virtio-net rx", "virtio-net-rx", "net-rx"), ("virtio-net rx vhost", "virtio-net-rx-vhost", "net-rx"),
         ("virtio-net tx", "virtio-net-tx", "net-tx"), ("virtio-net tx vhost", "virtio-net-tx-vhost", "net-tx"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--profile", default="auto")
    args = ap.parse_args()
    rows = []
    with Runner(accel=args.accel) as runner, tempfile.TemporaryDirectory(prefix="hil-device-bench-") as tmp:
        for label, scenario, op in PATHS:
            count = min(args.count, 1000) if op == "dev-dma" else args.count
            sc = load_scenario(scenario, root=ROOT, valid_profiles=PROFILES,
                               overrides=[f"workload.ops.0.count={count}", f"profile={args.profile}"])
            result = runner.run(sc, Path(tmp) / scenario)
            m = runner.last_measurement
            got = m.op(op) if m else None
            if got is None or not got.reported.get("irqs"):
                rows.append((label, result.verdict.value, "-", "-", "-", "-", result.error[:60]))
                continue
            irqs = got.reported["irqs"]
            secs = got.tsc / (got.reported["tsc_khz"] * 1000)
            per = ", ".join(f"{r} {n / irqs:.2f}" for r, n in sorted(got.exits.items()))
            # request -> handler entry; net-rx has no request: the gap between receive interrupts
            lat = got.latency.get("lat") or got.latency.get("isr_interval")
            rows.append((label, result.verdict.value, f"{irqs}", f"{irqs / secs:.0f}",
                         f"{lat.p50 / 1000:.1f}" if lat else "-", f"{lat.p99 / 1000:.1f}" if lat else "-", per))
    head = ("path", "verdict", "irqs", "irqs/s", "p50 us", "p99 us", "exits per interrupt (rx: p50/p99 between irqs)")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
