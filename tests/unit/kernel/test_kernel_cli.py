"""`hil kernel` keeps the exit-code contract: 0 success, 2 any error (bad input, a failed build,
a bug in hil, a SIGTERM), never 1 and never a traceback."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.lab.kernel import cli

ROOT = Path(__file__).resolve().parents[3]


def hil_kernel(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hil.cli", "kernel", *args], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), timeout=60)


def test_help_documents_the_exit_codes():
    proc = hil_kernel("--help")
    assert proc.returncode == 0
    assert "exit codes:" in proc.stdout and "0  success" in proc.stdout and "never exits 1" in proc.stdout


def test_series_with_an_empty_value_is_exit_2_with_file_and_line(tmp_path):   # review I1 via series.yaml
    d = tmp_path / "badseries"
    d.mkdir()
    (d / "series.yaml").write_text("name: bad\nbase:\n  kind: upstream\n  version:\nprofile: slave-v2\n")
    proc = hil_kernel("show", str(d))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "series.yaml:2: base: missing required key 'version'" in proc.stderr


@pytest.mark.parametrize("args", [["bogus"], [], ["show"], ["import", "/nonexistent", "--series", "core-marker"],
                                  ["build", "--series", "dedicated-cpu", "--base", "9.99"]])
def test_errors_are_exit_2(args, tmp_path):
    proc = hil_kernel(*args, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.strip()


def test_an_unexpected_exception_is_exit_2_with_a_message(monkeypatch, capsys):
    def boom(*a, **k):
        raise TypeError("'NoneType' object is not subscriptable")
    monkeypatch.setattr(cli, "load_series", boom)
    assert cli.main(["show", "core-marker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hil kernel: internal error (a bug in hil") and "TypeError" in err


def test_os_error_is_exit_2(monkeypatch, capsys):
    def full(*a, **k):
        raise OSError(28, "No space left on device", "/cache/x")
    monkeypatch.setattr(cli, "load_series", full)
    assert cli.main(["show", "core-marker"]) == 2
    assert capsys.readouterr().err == "hil kernel: /cache/x: No space left on device\n"


def test_sigterm_unwinds_to_exit_2(monkeypatch, capsys):
    cleaned = []

    def slow(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            cleaned.append(True)     # a finally (temporary dirs, subprocess.run's kill) runs
    monkeypatch.setattr(cli, "load_series", slow)
    before = signal.getsignal(signal.SIGTERM)
    t0 = time.monotonic()
    assert cli.main(["show", "core-marker"]) == 2
    assert time.monotonic() - t0 < 4 and cleaned == [True]
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before
