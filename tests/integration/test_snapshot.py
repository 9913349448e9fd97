"""A restored idle-L1 snapshot measures exactly what a booted L1 measures (whose init started
the L2 QEMU from L0's fw_cfg request, adopted by the agent); an L1 restored with its L2 QEMU
parked (started paused before L1's snapshot) measures exactly what an L2 QEMU started by the
run measures."""
import json
from pathlib import Path

import pytest

from hil.lab.l1 import info_path

from reliability import Lab, private_lab, run_hil

pytestmark = pytest.mark.lab


def run(out: Path, *extra: str, scenario: str = "probe-counts-small", lab: Lab | None = None) -> dict:
    proc = run_hil(lab, "run", scenario, "--accel", "tcg", "--out", str(out), *extra, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "result.json").read_text())


def window_exits(result: dict) -> dict:
    """Each op's counts of the reasons the model predicts exactly (timing noise left out)."""
    return {c["name"]: {r["reason"]: r["measured"] for r in c["rows"]
                        if r["predicted"]["low"] == r["predicted"]["high"]}
            for c in result["cases"] if c["name"] not in ("kvm-counters", "probe-glue")}


def test_restore_equals_boot(tmp_path):
    booted = run(tmp_path / "boot", "--set", "topology.l1.snapshot=false")
    idle = ("--set", "topology.l1.park_l2=false")      # the idle snapshot itself (parked: below)
    run(tmp_path / "first", *idle)          # saves the snapshot if it does not exist yet
    restored = run(tmp_path / "restored", *idle)
    assert booted["provenance"]["l1"]["start"] == "booted"
    assert booted["provenance"]["l1"]["agent"]["boot_l2"] == {"started": True, "error": ""}
    assert booted["provenance"]["l2"]["qemu_start"] == "at L1's boot"
    assert restored["provenance"]["l2"]["qemu_start"] == "at the run"
    assert booted["provenance"]["l2"]["argv"] == restored["provenance"]["l2"]["argv"]
    assert restored["provenance"]["l1"]["start"].startswith("restored ") and "/l1-snapshot/" in restored[
        "provenance"]["l1"]["start"]
    assert window_exits(restored) == window_exits(booted)
    assert restored["verdict"] == booted["verdict"] == "PASS"

    # the restore did not ask L1 what it is: its snapshot's saved info says, and says what a boot says
    snapshot = Path(restored["provenance"]["l1"]["start"].removeprefix("restored "))
    saved = json.loads(info_path(snapshot).read_text())
    assert restored["provenance"]["l1"]["agent"] == saved
    assert {k: v for k, v in booted["provenance"]["l1"]["agent"].items() if k != "boot_l2"} == saved
    # without it (torn, or a snapshot older than it) L1 is asked, answers the same, and it is saved
    info_path(snapshot).write_text('{"arch": "sv')
    asked = run(tmp_path / "asked", *idle)
    assert asked["provenance"]["l1"]["start"] == restored["provenance"]["l1"]["start"]
    assert asked["provenance"]["l1"]["agent"] == saved and asked["verdict"] == "PASS"
    assert json.loads(info_path(snapshot).read_text()) == saved


def started(result: dict) -> tuple[str, str | None, str]:
    l1 = result["provenance"]["l1"]
    return l1["start"], l1.get("parked_snapshot"), result["provenance"]["l2"]["qemu_start"]


def test_parked_l2_measures_what_a_fresh_start_measures(warm_result, tmp_path):
    lab = private_lab(tmp_path / "lab")        # l1-parked starts empty: which run saves, which restores is exact
    parked_dir = lab.cache / "l1-parked"

    def go(name: str, *extra: str) -> dict:
        return run(tmp_path / name, *extra, scenario="probe-basic", lab=lab)
    fresh = go("fresh", "--set", "topology.l1.park_l2=false")
    assert not parked_dir.exists()                         # switched off: nothing parked, nothing saved
    first = go("first")
    second = go("second")

    idle_start = fresh["provenance"]["l1"]["start"]
    assert idle_start.startswith("restored ") and "/l1-snapshot/" in idle_start
    assert started(fresh) == (idle_start, None, "at the run")
    saved = list(parked_dir.glob("*.state"))
    assert len(saved) == 1 and saved[0].stat().st_size > 100 << 20
    assert started(first) == (idle_start, f"saved {saved[0]}", "parked")    # parked, saved, adopted
    assert started(second) == (f"restored {saved[0]}", None, "parked")      # the parked one restored
    assert second["provenance"]["l2"]["argv"] == first["provenance"]["l2"]["argv"] == fresh["provenance"]["l2"]["argv"]
    assert "park_and_save" in first["measurement"]["timings"] and "park_and_save" not in second["measurement"]["timings"]

    # nothing of L2 ran before `cont`: every exactly predicted count is the fresh start's
    assert window_exits(first) == window_exits(fresh)
    assert window_exits(second) == window_exits(fresh)
    assert fresh["verdict"] == first["verdict"] == second["verdict"] == "PASS"
    assert not list(parked_dir.glob(".*.state.*"))          # no temp file left

    # another op count: another L2 command line, so another parked snapshot, saved then restored
    changed = go("changed", "--set", "workload.ops.0.count=24")
    changed_again = go("changed-again", "--set", "workload.ops.0.count=24")
    new = sorted(set(parked_dir.glob("*.state")) - set(saved))
    assert len(new) == 1
    assert started(changed) == (idle_start, f"saved {new[0]}", "parked")
    assert started(changed_again) == (f"restored {new[0]}", None, "parked")
    assert window_exits(changed_again) == window_exits(changed)
    assert window_exits(changed)["cpuid"] != window_exits(fresh)["cpuid"]   # the count did change
    assert changed["verdict"] == changed_again["verdict"] == "PASS"
