"""CLI conventions: --json FILE means the same everywhere ('-' or bare: stdout), hil list
shows groups, descriptions and needs, hil schema documents every key."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.scenario.catalog import keys
from hil.scenario.schema import SCENARIO_FIELDS, TOPOLOGY_FIELDS

ROOT = Path(__file__).resolve().parents[2]


def hil(*args):
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], cwd=ROOT, capture_output=True, text=True)


def test_list_shows_groups_descriptions_and_needs():
    proc = hil("list")
    assert proc.returncode == 0
    line = next(l for l in proc.stdout.splitlines() if l.startswith("probe-basic "))
    assert "[default, demo, smoke, nightly]" in line and "Exits of CPUID" in line
    assert "needs kernel series dedicated-cpu" in proc.stdout
    assert "needs --set workload.kernel=..." in proc.stdout


@pytest.mark.parametrize("form", [("--json", "-"), ("--json",)])
def test_list_json_on_stdout(form):
    entries = json.loads(hil("list", *form).stdout)
    basic = next(e for e in entries if e["name"] == "probe-basic")
    assert basic["groups"] == ["default", "demo", "smoke", "nightly"] and basic["topology"] == "nested-svm" and basic["needs"] == []


def test_list_json_to_a_file_and_a_group(tmp_path):
    proc = hil("list", "--group", "kicks", "--json", str(tmp_path / "l.json"))
    names = [e["name"] for e in json.loads((tmp_path / "l.json").read_text())]
    assert proc.returncode == 0 and names and all(n.startswith("kick") for n in names)
    assert "kicks-io-thread" in proc.stdout          # the table still on stdout
    bad = hil("list", "--group", "nope")
    assert bad.returncode == 2 and "no scenario in group 'nope'" in bad.stderr and "demo" in bad.stderr


def test_every_key_is_documented_with_type_default_and_limits():
    rows = keys()
    assert all(r["description"] for r in rows), [r["key"] for r in rows if not r["description"]]
    by_key = {(r["scope"], r["key"]): r for r in rows}
    smp = by_key[("topology", "l1.smp")]
    assert (smp["type"], smp["default"], smp["limits"]) == ("int", 2, "[1, 64]")
    assert by_key[("scenario", "workload.ops[].op")]["limits"].startswith("one of cpuid")
    assert ("topology", "l2.pin") in by_key and "items: int in [0, 63]" in by_key[("topology", "l2.pin")]["limits"]
    # every field of the tables is listed
    assert {k for (s, k) in by_key if s == "scenario" and "." not in k} == set(SCENARIO_FIELDS)
    assert {k for (s, k) in by_key if s == "topology" and "." not in k} == set(TOPOLOGY_FIELDS)


def test_schema_cli_text_and_json():
    text = hil("schema").stdout
    assert "  l1.boot_timeout  (int, default 180; [1, 86400])" in text
    rows = json.loads(hil("schema", "--json", "-").stdout)
    assert len(rows) == len(keys())


def test_doctor_json_to_a_file_keeps_the_text(tmp_path):
    proc = hil("doctor", "--json", str(tmp_path / "d.json"))
    checks = json.loads((tmp_path / "d.json").read_text())
    assert proc.returncode in (0, 2) and checks and all("name" in c and "ok" in c for c in checks)
    assert proc.stdout.count("\n") >= len(checks) and proc.stdout.startswith("[")


def test_hil_kernel_takes_quiet_and_verbose_anywhere(capsys):
    """`hil kernel` shows make's and apt's progress on stderr; -q/-v set how much, before or
    after its subcommand, and its own arguments are untouched."""
    from hil.cli import main
    for argv in (["kernel", "-q", "list"], ["kernel", "list", "-v"], ["kernel", "list"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "dedicated-cpu" in out, argv
    assert main(["kernel", "-q", "show", "dedicated-cpu"]) == 0
    assert '"name": "dedicated-cpu"' in capsys.readouterr().out
