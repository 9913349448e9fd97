"""Timings of the default demo, cold and warm, against the same QEMU commands run by hand.

    python bench/demo_bench.py [--scenario probe-basic] [--warm-runs 3]

cold: empty image cache (a fresh XDG_CACHE_HOME): image build + L1 boot (+ saving the idle-L1
      snapshot) + L2 run + verdict.
warm (snapshot): cache filled; `hil run` end to end, L1 restored from its snapshot.
warm (boot): the same with topology.l1.snapshot=false, L1 booted every time.
by hand: the same L1 QEMU command line booting the same image, whose init runs the same L2
QEMU command line directly (no agent, tracing, QMP or verdict), timed from start to exit.
Targets (issue 2): warm < 20 s on a 2-core TCG machine, warm / by-hand < 1.15.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil.lab.assets.cpio import write_cpio  # noqa: E402


def hil_run(scenario: str, cache: str, out: Path, *extra: str) -> tuple[float, dict]:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "run", scenario, "--accel", "tcg", "--out", str(out),
                           *extra], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"hil run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return wall, json.loads((out / "result.json").read_text())


def by_hand(result: dict, work: Path) -> float:
    """Boot the same L1 argv with an extra initrd segment whose init runs the L2 argv."""
    prov = result["provenance"]
    l1 = list(prov["l1"]["argv"])
    l2 = list(prov["l2"]["argv"])
    probe = Path(prov["l2"]["payload"]["probe"])
    seg = work / "seg"
    (seg / "run/hil/payload").mkdir(parents=True)
    (seg / "run/hil/payload/kernel").write_bytes(probe.read_bytes())
    # The probe ends itself through isa-debug-exit instead of being quit over QMP.
    append_at = l2.index("-append") + 1
    l2[append_at] += " exit=1"
    l2 += ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
    script = seg / "baseline.sh"
    script.write_text("#!/bin/sh\n" + shlex.join(l2) + "\necho baseline-l2-exit=$?\n")
    script.chmod(0o755)
    extra = work / "seg.cpio"
    write_cpio(seg, extra)
    initrd_at = l1.index("-initrd") + 1
    combined = work / "initrd.cpio"
    with open(combined, "wb") as f:
        f.write(Path(l1[initrd_at]).read_bytes())
        f.write(extra.read_bytes())
    l1[initrd_at] = str(combined)
    # Same command line; the agent's channel and console just go to files here.
    l1 = [f"file,id=console,path={work / 'l1-console.log'}" if a.startswith("file,id=console,path=") else a
          for a in l1]
    sock = next(a for a in l1 if a.startswith("socket,id=agent,"))
    l1[l1.index(sock)] = f"socket,id=agent,path={work / 'agent.sock'},server=on,wait=off"
    t0 = time.monotonic()
    subprocess.run(l1, check=True, capture_output=True, timeout=600)
    wall = time.monotonic() - t0
    console = next((work).glob("*.log"), None)
    if console and "baseline-l2-exit=" not in console.read_text(errors="replace"):
        sys.exit("by-hand baseline: L2 did not run (see " + str(console) + ")")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="probe-basic")
    ap.add_argument("--warm-runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as tmp:
        tmpd = Path(tmp)
        cold_cache = str(tmpd / "cold-cache")
        cold_wall, cold = hil_run(args.scenario, cold_cache, tmpd / "cold")
        t = cold["measurement"]["timings"]
        print(f"cold  total {cold_wall:6.1f} s  image build {t['image']:.1f} s  probe build {t['probe_build']:.1f} s  "
              f"L1 boot {t['l1_boot']:.1f} s  L2 run {t['l2_run']:.1f} s  verdict {cold.get('verdict_seconds', 0):.2f} s")
        warm: dict[str, list[float]] = {"snapshot": [], "boot": []}
        for mode, extra in (("snapshot", ()), ("boot", ("--set", "topology.l1.snapshot=false"))):
            for i in range(args.warm_runs):
                wall, res = hil_run(args.scenario, cold_cache, tmpd / f"warm-{mode}{i}", *extra)
                warm[mode].append(wall)
                t = res["measurement"]["timings"]
                print(f"warm ({mode:8s}) total {wall:5.1f} s  image (cache hit) {t['image']:.2f} s  "
                      f"L1 {'restore' if mode == 'snapshot' else 'boot'} {t['l1_boot']:.2f} s  "
                      f"L2 run {t['l2_run']:.1f} s  verdict {res.get('verdict_seconds', 0):.3f} s  -> {res['verdict']}")
        hand = []
        for i in range(args.warm_runs):
            work = tmpd / f"hand{i}"
            work.mkdir()
            hand.append(by_hand(res, work))
            print(f"by hand          total {hand[-1]:5.1f} s  (same L1 and L2 command lines, L1 booted, no hil)")
        h = statistics.median(hand)
        for mode, walls in warm.items():
            w = statistics.median(walls)
            print(f"median warm ({mode}) {w:.1f} s (target < 20 s); by hand {h:.1f} s; ratio {w / h:.3f} (target < 1.15)")


if __name__ == "__main__":
    main()
