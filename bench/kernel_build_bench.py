"""Kernel series build times: from a cold cache (download and reduce Debian's source, apply,
build kvm modules out of tree) and from a warm one (a cache hit).

    python bench/kernel_build_bench.py [--series dedicated-cpu] [--base 6.12]   (default: every base)
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


def build(series: str, base: str, cache: str) -> tuple[float, str]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "kernel", "build", "--series", series, "--base", base], cwd=ROOT,
                          env=dict(os.environ, XDG_CACHE_HOME=cache), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    return time.monotonic() - t0, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", default="dedicated-cpu")
    ap.add_argument("--base", action="append", help="a base of the series (default: all of them)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from hil.lab.kernel.manifest import load_series
    bases = args.base or [str(b["name"]) for b in load_series(args.series, ROOT).bases]
    for base in bases:
        with tempfile.TemporaryDirectory(prefix="hil-kbench-") as cache:
            cold, out = build(args.series, base, cache)
            print(f"{args.series} on {base}: cold cache {cold:6.1f} s  ({out})")
            warm, out = build(args.series, base, cache)
            print(f"{args.series} on {base}: warm cache {warm:6.1f} s  ({out})")


if __name__ == "__main__":
    main()
