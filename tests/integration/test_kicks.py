"""Kicks of a dedicated vCPU on the real stack (nested TCG lab, kernel_patches/dedicated-cpu):
I/O-thread MSIs and the kick-race stress, each against the same kernel in stock mode or in
the seed's v1 mode."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path, scenario):
    out = tmp_path / scenario
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "run", scenario, "--accel", "tcg", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    result = json.loads((out / "result.json").read_text())
    assert proc.returncode == 0 and result["verdict"] == "PASS", proc.stdout + proc.stderr
    m = result["measurement"]
    return m["ops"][0], m["kick_trace"], result


def test_io_thread_kicks_are_reschedule_ipis_in_stock_mode_and_nmis_in_dedicated_mode(tmp_path):
    stock_op, stock, _ = run(tmp_path, "kicks-io-thread")
    ded_op, ded, result = run(tmp_path, "kicks-io-thread-dedicated")
    n = stock_op["count"]
    assert stock["io_thread_msis"] == ded["io_thread_msis"] == [1] * n     # KVM_SIGNAL_MSI from QEMU's main thread
    # stock: every kick an external-interrupt exit, from a reschedule IPI to the vCPU's CPU
    assert stock_op["exits"]["interrupt"] >= n and stock_op["exits"].get("nmi", 0) == 0
    assert stock["host_interrupts_per_op"]["kicks"]["reschedule"]["1"] >= n
    # dedicated: every kick that found the vCPU in the guest an nmi exit, none an interrupt exit
    # (an interrupt exit there can only be a host interrupt of its own: the residual tick, or
    # the reschedule IPI KVM sends itself for an immediate exit)
    host = ded["host_interrupts_per_op"]["kicks"]
    own = sum(cpus.get("1", 0) for cpus in host.values())
    assert ded_op["exits"].get("interrupt", 0) <= own < n and ded_op["exits"]["nmi"] >= n
    found = {(f["mode"], f["nmi"]): f["count"] for f in ded["found"]}
    assert found.get(("in-guest", True), 0) >= n and ded["stock_kicks"].get("in-guest", 0) == 0
    assert host["reschedule"].get("1", 0) <= ded["immediate_exits_per_op"]["kicks"].get("0", 0)
    assert result["provenance"]["l2"]["injected"] == [{"vcpu": i, "request": 0xAEAF, "arg": 1, "result": 0}
                                                       for i in range(2)]


@pytest.mark.deep    # fast tier: the v2 race on 6.12
def test_kick_race_v2_loses_no_kick_and_v1_loses_what_the_window_caught(tmp_path):
    v2_op, v2, _ = run(tmp_path, "kick-race-v2")
    v1_op, v1, _ = run(tmp_path, "kick-race-v1")
    # v2: kicks did land past the request check, each one made the entry exit at once (a
    # self-NMI), and the guest took every kick in time
    assert v2["window"] >= 1
    assert sum(r["self_nmis"] for r in v2["landed"]) == v2["window"]
    assert v2_op["reported"]["late"] == 0 and v2_op["reported"]["irqs"] == v2_op["reported"]["sent"]
    # v1: the same race loses kicks (late), and leaves the vCPU at EXITING for later ones
    assert v1["window_pending"] >= 1 and v1_op["reported"]["late"] >= 1
    assert sum(r["self_nmis"] for r in v1["landed"]) == 0


def test_the_6_12_base_v2_loses_no_kick(tmp_path):
    """The series rebased onto Debian 12's linux-6.12: L1 runs 6.12 with the rebuilt modules;
    kicks landed in v2's window and none was late (the fast tier's kick race)."""
    v2_op, v2, result = run(tmp_path, "kick-race-v2-6.12")
    assert result["provenance"]["l1"]["image"]["kernel_release"].startswith("6.12.")
    assert result["provenance"]["l1"]["image"]["series"]["base"]["name"] == "6.12"
    assert v2["window"] >= 1 and v2_op["reported"]["late"] == 0
    assert sum(r["self_nmis"] for r in v2["landed"]) == v2["window"]


@pytest.mark.deep    # fast tier: v2 on 6.12 above
def test_the_6_12_base_v1_loses_what_the_window_caught(tmp_path):
    v1_op, v1, _ = run(tmp_path, "kick-race-v1-6.12")
    assert v1["window_pending"] >= 1 and v1_op["reported"]["late"] >= 1
