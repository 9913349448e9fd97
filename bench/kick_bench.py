"""Kicks in the nested lab: what one costs and how often the stress hits the race window.

    python bench/kick_bench.py [--count 6000]

Runs kicks-io-thread-dedicated (16 MSIs from QEMU's I/O thread by ptrace) and kick-race-v2
(IPI pairs from vCPU 1), then prints kick latency, kicks per second of guest time, and
window landings per 1000 kicks (the figure that sizes the stress: the v1 scenario needs a
landing with its request still pending to show a loss).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(scenario: str, out: Path, *sets: str) -> tuple[dict, float]:
    t0 = time.monotonic()
    argv = [sys.executable, "-m", "hil.cli", "run", scenario, "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if not (out / "result.json").exists():
        sys.exit(proc.stdout + proc.stderr)
    return json.loads((out / "result.json").read_text()), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=6000, help="kicks in the race")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hil-kickbench-") as tmp:
        r, wall = run("kicks-io-thread-dedicated", Path(tmp) / "io")
        op = r["measurement"]["ops"][0]
        ms = op["reported"]["tsc"] / op["reported"]["tsc_khz"]
        print(f"I/O-thread kicks: {op['count']} MSIs by ptrace in {ms:.0f} ms of guest time "
              f"(20 ms apart), verdict {r['verdict']}, run {wall:.1f} s")
        r, wall = run("kick-race-v2", Path(tmp) / "race", f"workload.ops.0.count={args.count}")
        op, trace = r["measurement"]["ops"][0], r["measurement"]["kick_trace"]
        rep = op["reported"]
        secs = rep["tsc"] / rep["tsc_khz"] / 1000
        print(f"kick race (v2): {rep['sent']} kicks in {secs:.2f} s of guest time = {rep['sent'] / secs:,.0f} kicks/s; "
              f"latency avg {rep['lat_avg_ns'] / 1000:.0f} us, max {rep['lat_max_ns'] / 1000:.0f} us; "
              f"EOI exit {rep['eoi_exit_ns'] / 1000:.0f} us")
        print(f"window landings: {trace['window']} ({1000 * trace['window'] / rep['sent']:.1f} per 1000 kicks), "
              f"{trace['window_pending']} with the request still pending "
              f"({1000 * trace['window_pending'] / rep['sent']:.2f} per 1000); late {rep['late']}; "
              f"verdict {r['verdict']}, run {wall:.1f} s")


if __name__ == "__main__":
    main()
