"""Kernel series build times: from a cold cache (download and reduce Debian's source, apply,
build kvm modules out of tree) and from a warm one (a cache hit).

    python bench/kernel_build_bench.py [--series dedicated-cpu]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(series: str, cache: str) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "kernel", "build", "--series", series], cwd=ROOT,
                          env=dict(os.environ, XDG_CACHE_HOME=cache), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    return time.monotonic() - t0, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", default="dedicated-cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hil-kbench-") as cache:
        cold, out = build(args.series, cache)
        print(f"cold cache: {cold:6.1f} s  ({out})")
        warm, out = build(args.series, cache)
        print(f"warm cache: {warm:6.1f} s  ({out})")


if __name__ == "__main__":
    main()
