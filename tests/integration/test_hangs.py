"""A hang at each level is ERROR within its timeout, with the logs of every level kept:
L1 that never boots (its init sleeps instead of starting the agent), L1 frozen while L2 runs (SIGSTOP of L1
QEMU: the agent is silent and QMP wedged; the whole-run watchdog ends it), and L2 spinning
with interrupts off (a foreign kernel that never prints its done pattern)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hil.lab import owner
from reliability import HIL, ROOT, SCENARIO, STAGE_LINES, Hil, leftovers, private_lab, running

pytestmark = pytest.mark.lab
SLACK_S = 30          # prepare + restore before the timed part, teardown after it

SPIN_S = """
/* cli; jmp . -- an L2 that spins with interrupts off and never prints: multiboot (ELF) and PVH */
    .section .note.pvh, "a"
    .balign 4
    .long 4, 4, 18              /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long _start
    .text
    .code32
    .balign 4
    .long 0x1BADB002, 0, -0x1BADB002
    .globl _start
_start:
    cli
1:  jmp 1b
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, warm_result):
    return private_lab(tmp_path_factory.mktemp("hangs") / "lab")


def _error(out: Path, rc: int, output: str) -> dict:
    assert rc == 2, output
    result = json.loads((out / "result.json").read_text())
    assert result["verdict"] == "ERROR", result
    return result


def test_l1_that_never_boots_is_error_within_boot_timeout(lab, tmp_path, capsys):
    out = tmp_path / "out"
    boot_timeout = 5      # the agent never comes: any timeout is the one that ends the wait
    t0 = time.monotonic()
    proc = subprocess.run([*HIL, "run", SCENARIO, "--accel", "tcg", "--out", str(out),
                           "--set", "topology.l1.snapshot=false", "--set", f"topology.l1.boot_timeout={boot_timeout}",
                           "--set", "topology.l1.append=rdinit=/bin/sleep -- 3600"],
                          cwd=ROOT, env=lab.env(), capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    result = _error(out, proc.returncode, proc.stdout + proc.stderr)
    assert f"within {boot_timeout}" in json.dumps(result), result
    assert (out / "l1-console.log").exists() and (out / "l1-qemu.log").exists()
    assert elapsed < boot_timeout + SLACK_S, elapsed
    assert leftovers(lab, set()) == []
    with capsys.disabled():
        print(f"\nhang: L1 never boots -> ERROR after {elapsed:.1f} s (boot_timeout {boot_timeout} s)")


def test_frozen_l1_is_error_within_the_run_timeout(lab, tmp_path, capsys):
    """SIGSTOP of L1 QEMU once L2 runs: the agent never answers, QMP is wedged."""
    out = tmp_path / "out"
    timeout = 8           # a warm run reaches L2 in 1.5-3 s; the watchdog must outlast that only
    # not parked: a private lab's first run would save a parked snapshot (3-4 s) inside the watchdog
    hil = Hil([*HIL, "run", SCENARIO, "--accel", "tcg", "--out", str(out), "--set", f"topology.timeout={timeout}",
               "--set", "topology.l1.park_l2=false"], lab.env())
    assert hil.wait_for(lambda: hil.has(STAGE_LINES["l2"]), 300), hil.output
    l1 = hil.descendant("qemu-system-x86_64")
    assert l1 is not None
    l1_start = owner.start_time(l1)
    os.kill(l1, signal.SIGSTOP)
    try:
        rc = hil.finish(timeout=timeout + 120)
    finally:
        if l1_start is not None and running(l1, l1_start):      # hil failed to kill it: do not leak it
            os.kill(l1, signal.SIGKILL)
    elapsed = time.monotonic() - hil.t0
    result = _error(out, rc, hil.output)
    assert "timeout" in json.dumps(result), result
    assert (out / "l1-console.log").exists() and (out / "repro.sh").exists()
    assert elapsed < timeout + SLACK_S, elapsed
    assert leftovers(lab, hil.seen) == []
    with capsys.disabled():
        print(f"\nhang: L1 frozen (agent silent) -> ERROR after {elapsed:.1f} s (topology.timeout {timeout} s)")


def test_l2_spinning_with_interrupts_off_is_error_within_l2_timeout(lab, tmp_path, capsys):
    src = tmp_path / "spin.S"
    src.write_text(SPIN_S)
    spin = tmp_path / "spin.elf"
    subprocess.run(["gcc", "-m32", "-nostdlib", "-static", "-Wl,-Ttext=0x100000", "-Wl,--build-id=none",
                    "-o", str(spin), str(src)], check=True)
    out = tmp_path / "out"
    l2_timeout = 4        # from L2 QEMU's launch (parked: already up)
    t0 = time.monotonic()
    proc = subprocess.run([*HIL, "run", "foreign-kernel", "--accel", "tcg", "--out", str(out),
                           "--set", f"workload.kernel={spin}", "--set", "workload.done_pattern=never printed",
                           "--set", f"topology.l2.timeout={l2_timeout}", "--set", "topology.l1.park_l2=false",
                           "--set", "expect.exits={hlt: {min: 0}}"],
                          cwd=ROOT, env=lab.env(), capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    result = _error(out, proc.returncode, proc.stdout + proc.stderr)
    assert f"within its timeout ({l2_timeout} s)" in json.dumps(result), result
    for log in ("l1-console.log", "l2-serial.log", "l2-qemu.log"):
        assert (out / log).exists(), log
    assert elapsed < l2_timeout + SLACK_S + 15, elapsed     # + L2 QEMU's start-up under TCG
    assert leftovers(lab, set()) == []
    with capsys.disabled():
        print(f"\nhang: L2 spins with interrupts off -> ERROR after {elapsed:.1f} s (l2.timeout {l2_timeout} s)")
