"""A crash mid-run leaves nothing behind (no QEMU, socket, run dir or mount), keeps the
logs and is reported as ERROR, not FAIL. Real QEMU, real L1."""
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _qemu_pids_for(marker: str) -> list[int]:
    pids = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            cmd = Path(d, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"qemu-system-x86_64") and any(marker.encode() in c for c in cmd):
            pids.append(int(d.split("/")[-1]))
    return pids


def _run_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "hil-l1-*")))


def _start(out: Path) -> subprocess.Popen:
    # Booted, not restored from a snapshot, so that the kill lands mid-boot.
    return subprocess.Popen([sys.executable, "-m", "hil.cli", "run", "probe-basic", "--accel", "tcg",
                             "--set", "topology.l1.snapshot=false", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for_l1(hil: subprocess.Popen, out: Path, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = _qemu_pids_for(str(out))
        if pids and (out / "l1-console.log").exists():
            return pids[0]
        assert hil.poll() is None, hil.stdout.read()
        time.sleep(0.2)
    raise AssertionError("L1 QEMU never started")


@pytest.mark.parametrize("victim", ["qemu", "hil"])
def test_kill_mid_run_reports_error_and_cleans_up(tmp_path, victim):
    mounts_before = Path("/proc/mounts").read_text()
    dirs_before = _run_dirs()
    out = tmp_path / "out"
    hil = _start(out)
    qemu = _wait_for_l1(hil, out)
    time.sleep(1.0)   # mid-boot
    os.kill(qemu if victim == "qemu" else hil.pid, signal.SIGKILL if victim == "qemu" else signal.SIGTERM)
    output, _ = hil.communicate(timeout=120)
    assert hil.returncode == 2, output
    assert "ERROR" in output and "FAIL" not in output.replace("FAIL (", "")
    assert _qemu_pids_for(str(out)) == []
    assert _run_dirs() - dirs_before == set()
    assert Path("/proc/mounts").read_text() == mounts_before
    assert (out / "l1-console.log").exists() and (out / "l1-qemu.log").exists()
    assert (out / "result.json").exists()
