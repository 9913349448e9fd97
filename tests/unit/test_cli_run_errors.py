"""hil run on bad input: exit 2 and a FILE:LINE: KEY message, no traceback, no QEMU started."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def hil(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_bad_override_exits_2_naming_it():
    proc = hil("run", "probe-basic", "--set", "workload.ops.0.cout=3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hil: --set workload.ops.0.cout=3: unknown key 'cout' (did you mean 'count'?)"
    assert "Traceback" not in proc.stderr


def test_bad_file_exits_2_naming_file_line_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: nested-svm\nworkload:\n  kind: probe\n  ops:\n    - {op: cpuid, count: -1}\n")
    proc = hil("run", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:5: workload.ops[0].count: -1 is out of range" in proc.stderr


def test_unknown_scenario_lists_known_ones():
    proc = hil("run", "no-such-scenario")
    assert proc.returncode == 2 and "probe-basic" in proc.stderr


def test_missing_foreign_kernel_named():
    proc = hil("run", "foreign-kernel")
    assert proc.returncode == 2
    assert "qemu_configs/scenarios/foreign-kernel.yaml:" in proc.stderr
    assert "workload.kernel: file not found" in proc.stderr


def test_a_profile_the_model_cannot_answer_exits_2_before_anything_boots(tmp_path):
    """Predictions come first: nothing is built or booted, and it says which key."""
    import time
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "run", "probe-basic", "--accel", "tcg", "--set",
                           "profile=stock-vmx", "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True,
                          text=True, env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 2 and time.monotonic() - t0 < 10
    assert proc.stderr.strip().endswith("--set profile=stock-vmx: the model cannot answer for 'stock-vmx' on svm: "
                                        "profile stock-vmx models vmx only, and this lab's L1 has svm")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_help_documents_the_exit_codes_and_version():
    assert "0 PASS" in hil("--help").stdout and "2 ERROR" in hil("--help").stdout
    assert hil("--version").stdout.startswith("hil ")


def test_an_unwritable_out_dir_is_bad_input_not_a_traceback(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    proc = hil("run", "probe-basic", "--accel", "tcg", "--out", str(f / "sub"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "cannot write there" in proc.stderr


def test_an_in_process_run_leaves_the_signal_mask_as_it_found_it(tmp_path, monkeypatch):
    """hil run holds stop signals while it writes its result; a caller (pytest, a batch)
    must get them back, or every process it starts later ignores SIGTERM."""
    import signal
    from hil import cli
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["run", "probe-basic", "--set", "profile=stock-vmx", "--out", str(tmp_path / "o")]) == 2
    monkeypatch.setattr("hil.runner.Runner.run", lambda self, sc, out, pred: __import__(
        "hil.verdict", fromlist=["x"]).skip_result(sc.name, "no lab in this test"))
    assert cli.main(["run", "probe-basic", "--accel", "tcg", "--out", str(tmp_path / "o2")]) == 3
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
