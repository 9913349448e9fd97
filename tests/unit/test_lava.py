"""LAVA jobs emitted by hil, validated by LAVA's own schema (Debian's lava-common, which lives
in /usr/bin/python3's dist-packages, not in the venv), and the lava-test-case calls made
from a batch output tree."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from hil import lava
from hil.batch import Entry, index_document
from hil.model import Bound
from hil.report import json as json_report
from hil.verdict import RunResult, Verdict
from hil.verdict.judge import CaseResult, ReasonRow

SYSTEM_PYTHON = "/usr/bin/python3"
VALIDATE = ("import sys, yaml\nfrom lava_common.schemas import validate\n"
            "try:\n    validate(yaml.safe_load(sys.stdin))\nexcept Exception as e:\n"
            "    print(f'{type(e).__name__}: {e}'); sys.exit(1)\nprint('valid')\n")


def _lava_common() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import lava_common.schemas"], capture_output=True,
                              timeout=60).returncode == 0
    except OSError:
        return False


needs_lava = pytest.mark.skipif(not _lava_common(), reason="Debian's lava-common is not installed for "
                                "/usr/bin/python3 (scripts/setup.sh installs it)")


def lava_validate(doc) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEM_PYTHON, "-c", VALIDATE], input=yaml.safe_dump(doc), capture_output=True,
                          text=True, timeout=60)


@needs_lava
@pytest.mark.parametrize("device_type", lava.DEVICE_TYPES)
@pytest.mark.parametrize("extra", [{}, {"ramdisk_url": "http://lab/initrd.gz", "rootfs_url": "http://lab/root",
                                        "kernel": "dedicated-cpu", "artifact_url": "http://art/up", "tags": ["svm"]}])
def test_emitted_jobs_validate_with_lavas_own_schema(device_type, extra):
    doc = lava.job(device_type, group="smoke", kernel_url="http://lab/vmlinuz", **extra)
    proc = lava_validate(doc)
    assert proc.returncode == 0 and proc.stdout.strip() == "valid", proc.stdout + proc.stderr
    steps = doc["actions"][-1]["test"]["definitions"][0]["repository"]["run"]["steps"]
    assert any(s.startswith("hil run --host --group smoke") for s in steps)
    assert any(s.startswith("hil lava results /tmp/hil-out") for s in steps)


@needs_lava
def test_the_validator_is_strict_a_wrong_key_is_named():
    doc = lava.job("x86", kernel_url="http://lab/vmlinuz")
    doc["actions"][0]["deploy"]["kernel"]["type"] = "bzimage"
    proc = lava_validate(doc)
    assert proc.returncode == 1 and "['deploy']['tftp']['kernel']" in proc.stdout, proc.stdout + proc.stderr


def test_cli_prints_yaml_and_refuses_an_unknown_device_type(capsys):
    from hil.cli import main
    assert main(["lava", "job", "--device-type", "qemu", "--kernel-url", "http://lab/vmlinuz"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["device_type"] == "qemu" and doc["actions"][0]["deploy"]["to"] == "tmpfs"
    with pytest.raises(SystemExit):
        main(["lava", "job", "--device-type", "arm", "--kernel-url", "x"])


def _tree(tmp_path: Path) -> Path:
    rows = [ReasonRow("cpuid", Bound(16, 16), 16, True), ReasonRow("hlt", Bound(8, 8), 7, False),
            ReasonRow("npf", Bound(0, None), 3, True, judged=False)]
    r1 = RunResult("probe-basic", Verdict.FAIL, [CaseResult("cpuid x16", Verdict.FAIL, rows=rows),
                                                  CaseResult("glue", Verdict.SKIP),
                                                  CaseResult("kut-status", Verdict.PASS, extra={"cycles": {"cpuid": 1500}})])
    d = tmp_path / "probe-basic"
    d.mkdir(parents=True)
    json_report.write(d / "result.json", r1)
    doc = index_document([Entry("probe-basic", "nested-svm", [r1], [str(d)], [1.0])], tmp_path,
                         repeat=1, kernel=None, elapsed=1.0, started="t")
    (tmp_path / "index.json").write_text(json.dumps(doc))
    return tmp_path


def test_results_become_lava_test_cases_with_exit_counts(tmp_path, capsys):
    out = _tree(tmp_path)
    calls: list[list[str]] = []
    assert lava.report(out, "http://art/up", call=lambda argv: calls.append(argv) or 0) == 0
    cases = [c for c in calls if c[0] == "lava-test-case"]
    assert cases[0] == ["lava-test-case", "probe-basic.cpuid_x16", "--result", "fail", "--measurement", "26",
                        "--units", "exits"]
    assert ["lava-test-case", "probe-basic.cpuid_x16.hlt", "--result", "fail", "--measurement", "7",
            "--units", "exits"] in cases
    assert not any(c[1].endswith(".npf") for c in cases)          # not judged: not a test case
    assert ["lava-test-case", "probe-basic.glue", "--result", "skip"] in cases
    assert ["lava-test-case", "probe-basic.cycles.cpuid", "--result", "pass", "--measurement", "1500",
            "--units", "cycles"] in cases
    assert calls[-2][:3] == ["curl", "-sSf", "-T"] and calls[-1][0] == "lava-test-reference"
    assert '"scenario": "probe-basic"' in capsys.readouterr().out      # result.json in the job log
