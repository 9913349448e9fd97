"""A batch on the real stack: the smoke group in one lab session (one L1 for both
scenarios, booted or restored once), one output tree with index.json and a merged JUnit."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def test_smoke_group_shares_one_l1_and_writes_one_tree(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "run", "--group", "smoke", "--repeat", "2",
                           "--accel", "tcg", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = json.loads((out / "index.json").read_text())
    assert [s["name"] for s in index["scenarios"]] == ["probe-basic", "probe-counts-small"]
    assert all(s["verdict"] == "PASS" and not s["flaky"] for s in index["scenarios"])
    runs = [r for s in index["scenarios"] for r in s["runs"]]
    assert len(runs) == 4 and all(r["kernel"]["kernel_package"].startswith("linux-image-6.1") for r in runs)
    # L1 started once: its console log lives in the first run's directory only
    consoles = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("l1-console.log"))
    assert consoles == ["probe-basic/r1"], consoles
    starts = {json.loads((out / r["dir"] / "result.json").read_text())["provenance"]["l1"]["start"] for r in runs}
    assert len(starts) == 1
    suites = ET.parse(out / "junit.xml").getroot()
    assert suites.tag == "testsuites" and len(suites) == 4 and suites.get("failures") == "0"
