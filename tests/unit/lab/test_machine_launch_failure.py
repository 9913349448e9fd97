"""A QEMU that exits before it connects to its monitor is a LaunchError at once, carrying its
output and exit code, not after the whole QMP timeout."""
import sys
import time

import pytest

from hil.lab.errors import LaunchError
from hil.lab.qemu.machine import Machine


def test_an_early_exit_is_reported_at_once(tmp_path):
    # stands in for QEMU refusing an option: prints, exits 1, never connects
    m = Machine(["sh", "-c", "echo 'qemu: -no-such-option: invalid option' >&2; exit 1"], name="bad",
                log_dir=tmp_path, qmp_timeout=30.0)
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as err:
        m.launch()
    assert time.monotonic() - t0 < 5.0
    assert err.value.exitcode == 1 and "invalid option" in err.value.output
    assert not m.run_dir.exists()


def test_a_process_that_never_connects_still_times_out(tmp_path):
    m = Machine(["sh", "-c", "sleep 30"], name="silent", log_dir=tmp_path, qmp_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(LaunchError):
        m.launch()
    assert 1.0 <= time.monotonic() - t0 < 10.0
    assert not m.is_running()


SILENT_MONITOR = """import socket, sys, time
path = next(a.split("path=", 1)[1] for a in sys.argv if "path=" in a)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
time.sleep(30)
"""


def test_a_monitor_that_connects_but_never_greets_times_out(tmp_path):
    # qemu.qmp's connect() has no timeout: attach() must not start it on a silent peer
    m = Machine([sys.executable, "-c", SILENT_MONITOR], name="mute", log_dir=tmp_path, qmp_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as err:
        m.launch()
    assert 1.0 <= time.monotonic() - t0 < 10.0
    assert "greeting" in str(err.value)
    assert not m.is_running()
