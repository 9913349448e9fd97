"""kvm-unit-tests as L2, the way its users run it (HIL_KUT_DIR: a built kvm-unit-tests tree;
skipped without one): the README's vmexit example ends by the test's own exit status, and
`hil kut` runs unittests.cfg entries by name in one batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
KUT = Path(os.environ.get("HIL_KUT_DIR", "/work/kut"))
needs_kut = pytest.mark.skipif(not (KUT / "x86/vmexit.flat").is_file(),
                               reason=f"no kvm-unit-tests build at {KUT} (set HIL_KUT_DIR)")


@needs_kut
def test_readme_vmexit_example_passes_by_its_exit_status(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "run", "foreign-kernel", "--accel", "tcg",
                           "--out", str(out), "--set", f"workload.kernel={KUT / 'x86/vmexit.flat'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["measurement"]["l2_exitcode"] == 1 and result["measurement"]["ended_by"] == "exit"
    status = next(c for c in result["cases"] if c["name"] == "kut-status")
    assert status["verdict"] == "PASS" and status["extra"]["status"] == 0
    assert status["extra"]["cycles"].get("cpuid", 0) > 0          # vmexit's own report was read
    whole = next(c for c in result["cases"] if c["name"] == "whole-run")
    assert whole["rows"] and not any(r["judged"] for r in whole["rows"])
    assert next(r["measured"] for r in whole["rows"] if r["reason"] == "cpuid") > 1000


@needs_kut
def test_hil_kut_runs_tests_by_name_in_one_batch(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "kut", "--kut-dir", str(KUT), "vmexit_cpuid",
                           "vmexit_ipi", "--accel", "tcg", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = json.loads((out / "index.json").read_text())
    assert [s["name"] for s in index["scenarios"]] == ["kut-vmexit_cpuid", "kut-vmexit_ipi"]
    ipi = json.loads((out / "kut-vmexit_ipi/result.json").read_text())
    assert ipi["provenance"]["scenario"]["topology"]["l2"]["smp"] == 2
