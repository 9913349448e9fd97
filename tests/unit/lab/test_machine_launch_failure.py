"""A QEMU that exits before it connects to its monitor is a LaunchError at once, carrying its
output and exit code, not after the whole QMP timeout."""
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
