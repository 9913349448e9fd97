"""Any kernel the user names runs as L2 the same way: here Debian's own Linux kernel (the
one L1 boots), which panics for want of a root filesystem; its whole-run exits are judged
by the bounds given on the command line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.lab.assets.l1_image import kernel_assets

pytestmark = [pytest.mark.lab, pytest.mark.deep]    # the fast tier: test_hangs runs a foreign kernel
ROOT = Path(__file__).resolve().parents[2]


def test_linux_kernel_as_l2(tmp_path):
    vmlinuz = kernel_assets("debian:linux-image-6.1").vmlinuz
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "run", "foreign-kernel", "--accel", "tcg", "--out", str(out),
         "--set", f"workload.kernel={vmlinuz}", "--set", "workload.append=console=ttyS0 panic=-1",
         "--set", "workload.done_pattern=Kernel panic", "--set", "topology.l2.memory=256",
         "--set", "expect.exits={cpuid: {min: 1}, io: {min: 100}, msr: {min: 1}}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    whole = next(c for c in result["cases"] if c["name"] == "whole-run")
    assert whole["verdict"] == "PASS"
    assert {r["reason"] for r in whole["rows"] if r["judged"]} == {"cpuid", "io", "msr"}
    assert "Kernel panic" in (out / "l2-serial.log").read_text()
    assert result["measurement"]["exits_all"]["io"] == result["measurement"]["counters"]["io_exits"]
