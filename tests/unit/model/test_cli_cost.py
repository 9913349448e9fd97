"""hil model on the command line, and the cost model's YAML host profiles."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hil.model import ModelError, Operation
from hil.model.cost import HostCosts, event_latency, latency_distribution, percentile

ROOT = Path(__file__).resolve().parents[3]


def model(*args):
    return subprocess.run([sys.executable, "-m", "hil.cli", "model", *args], capture_output=True, text=True)


def test_json_answer_has_the_documented_keys():
    proc = model("--profile", "stock-svm", "--arch", "svm", "--event", "cpuid", "--count", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"exits", "counters", "guest_interrupts", "bounces", "delivered"} <= set(out)
    assert out["exits"]["cpuid"] == 12 and out["counters"]["exits"]["low"] == 12


def test_list_and_unknown_names():
    listing = model("--list").stdout
    assert "slave-v2" in listing and "msi-assigned" in listing
    bad = model("--profile", "slave-v3", "--event", "cpuid")
    assert bad.returncode == 2 and "unknown profile 'slave-v3'; valid:" in bad.stderr and "slave-v2" in bad.stderr
    bad = model("--profile", "slave-v2", "--event", "cpuidd")
    assert bad.returncode == 2 and "unknown event 'cpuidd'" in bad.stderr
    bad = model("--profile", "slave-v2", "--event", "kick", "--param", "guest_state=asleep")
    assert bad.returncode == 2 and "running, halted, outside" in bad.stderr


def test_default_host_profile_loads_and_ranks_profiles():
    costs = HostCosts.from_mapping(yaml.safe_load((ROOT / "qemu_configs/host_profiles/default.yaml").read_text()))
    msi = Operation.of("msi-assigned", 1)
    assert event_latency(msi, "slave-v2", costs) < event_latency(msi, "stock-2012", costs)
    hist = latency_distribution([Operation.of("msi-assigned", 90),
                                 Operation.of("pio-user", 10)], "slave-v2", costs)
    assert sum(hist.values()) == 100 and percentile(hist, 0.5) < percentile(hist, 0.99)


def test_bad_host_profile_names_the_key():
    with pytest.raises(ModelError, match=r"cycles.exit_entri: unknown cost"):
        HostCosts.from_mapping({"cycles": {"exit_entri": 1}}, "x.yaml")
