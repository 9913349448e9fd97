"""A restored idle-L1 snapshot measures exactly what a booted L1 measures."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def run(out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "run", "probe-counts-small", "--accel", "tcg",
                           "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "result.json").read_text())


def window_exits(result: dict) -> dict:
    """Each op's counts of the reasons the model predicts exactly (timing noise left out)."""
    return {c["name"]: {r["reason"]: r["measured"] for r in c["rows"]
                        if r["predicted"]["low"] == r["predicted"]["high"]}
            for c in result["cases"] if c["name"] not in ("kvm-counters", "probe-glue")}


def test_restore_equals_boot(tmp_path):
    booted = run(tmp_path / "boot", "--set", "topology.l1.snapshot=false")
    run(tmp_path / "first")                 # saves the snapshot if it does not exist yet
    restored = run(tmp_path / "restored")
    assert booted["provenance"]["l1"]["start"] == "booted"
    assert restored["provenance"]["l1"]["start"].startswith("restored ")
    assert window_exits(restored) == window_exits(booted)
    assert restored["verdict"] == booted["verdict"] == "PASS"
