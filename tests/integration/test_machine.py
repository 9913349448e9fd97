"""The QEMU lifecycle against a real QEMU: launch failure, QMP, shutdown ladder, cleanup."""
import shutil

import pytest

from hil.lab.errors import LaunchError
from hil.lab.qemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU not installed")
BASE = ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "none", "-accel", "tcg"]


def test_launch_failure_carries_command_and_output(tmp_path):
    m = Machine(BASE + ["-no-such-option"], name="bad", log_dir=tmp_path)
    with pytest.raises(LaunchError) as err:
        m.launch()
    assert "-no-such-option" in str(err.value) and "-no-such-option" in err.value.output
    assert err.value.argv[:len(BASE)] == BASE
    assert not m.run_dir.exists()


def test_run_dir_private_qmp_works_and_everything_is_freed(tmp_path):
    m = Machine(BASE, name="ok", log_dir=tmp_path)
    assert m.run_dir.stat().st_mode & 0o777 == 0o700
    with m:
        assert m.command("query-status")["status"] in ("running", "prelaunch")
        assert m.qmp_path.exists()
        pid = m.proc.pid
    assert m.exitcode is not None
    assert not m.run_dir.exists()
    assert not (shutil.os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z")


def test_killed_qemu_is_noticed_and_cleaned(tmp_path):
    m = Machine(BASE, name="victim", log_dir=tmp_path)
    m.launch()
    m.proc.kill()
    m.wait(5)
    assert not m.is_running()
    m.shutdown()
    assert not m.run_dir.exists()
    assert (tmp_path / "victim-qemu.log").exists()   # logs are kept
