"""Topologies that extend others (keys merged, each key's origin kept for errors and
provenance), `--set topology=NAME`, and the load-time rules the op table and the model's
reason tables give: everything refused before anything boots, naming file, line and key."""
from pathlib import Path

import pytest

from hil.model import PROFILES
from hil.scenario import ConfigError, load_scenario, load_topology
from hil.scenario.prediction import predict_scenario

ROOT = Path(__file__).resolve().parents[3]


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def root(tmp_path):
    write(tmp_path, "qemu_configs/topologies/base.yaml",
          "accel: tcg\nl1:\n  smp: 2\n  memory: 2048\nl2:\n  memory: 64\n  qemu_params: [-a, -b]\n")
    write(tmp_path, "qemu_configs/topologies/child.yaml",
          "extends: base\ndescription: child\nl1:\n  memory: 512\nl2:\n  qemu_params: [-c]\n")
    write(tmp_path, "qemu_configs/topologies/grandchild.yaml", "extends: child\nl2:\n  smp: 2\n")
    return tmp_path


def scenario(root, text, overrides=()):
    write(root, "qemu_configs/scenarios/s.yaml", text)
    return load_scenario("s", root=root, overrides=overrides, valid_profiles=PROFILES)


def err(root, text, overrides=()):
    with pytest.raises(ConfigError) as e:
        scenario(root, text, overrides)
    return str(e.value)


PROBE = "topology: {t}\nworkload:\n  ops:\n    - {{op: cpuid, count: 4}}\n"


def test_child_keys_win_mappings_merge_lists_replace(root):
    t = load_topology("grandchild", root=root)
    assert (t.accel, t.l1.smp, t.l1.memory, t.l2.smp, t.l2.qemu_params) == ("tcg", 2, 512, 2, ("-c",))
    assert t.extends == ("qemu_configs/topologies/child.yaml", "qemu_configs/topologies/base.yaml")


def test_origins_name_the_file_that_set_each_key(root):
    s = scenario(root, PROBE.format(t="grandchild"), ["topology.l2.memory=32"])
    assert s.origins["topology.l1.memory"] == "qemu_configs/topologies/child.yaml:4"
    assert s.origins["topology.accel"] == "qemu_configs/topologies/base.yaml:1"
    assert s.origins["topology.l2.smp"] == "qemu_configs/topologies/grandchild.yaml:3"
    assert s.origins["topology.l2.memory"] == "--set topology.l2.memory=32"
    assert s.origins["workload.ops[0].count"] == "qemu_configs/scenarios/s.yaml:4"


def test_an_error_in_an_inherited_key_names_the_parent_file(root):
    write(root, "qemu_configs/topologies/base.yaml", "accel: warp\n")
    msg = err(root, PROBE.format(t="child"))
    assert msg.startswith("qemu_configs/topologies/base.yaml:1: accel: 'warp' is not one of")


def test_extends_cycle_and_missing_parent_are_refused(root):
    write(root, "qemu_configs/topologies/a.yaml", "extends: b\n")
    write(root, "qemu_configs/topologies/b.yaml", "extends: a\n")
    assert "extends itself" in err(root, PROBE.format(t="a"))
    write(root, "qemu_configs/topologies/c.yaml", "extends: nope\n")
    assert err(root, PROBE.format(t="c")).startswith("qemu_configs/topologies/c.yaml:1: extends: no such topology")


def test_inline_topology_may_extend(root):
    s = scenario(root, "topology:\n  extends: child\n  l2:\n    smp: 2\nworkload:\n  ops:\n    - {op: cpuid, count: 4}\n")
    assert (s.topology.l1.memory, s.topology.l2.smp) == (512, 2)
    assert s.origins["topology.l2.smp"] == "qemu_configs/scenarios/s.yaml:4"


def test_set_topology_switches_the_named_topology_or_is_refused(root):
    s = scenario(root, PROBE.format(t="base"), ["topology=child", "topology.l2.smp=2"])
    assert (s.topology.name, s.topology.l1.memory, s.topology.l2.smp) == ("child", 512, 2)
    assert "name a topology" in err(root, PROBE.format(t="base"), ["topology={accel: kvm}"])


def test_the_shipped_topologies_extend_and_load():
    for p in sorted((ROOT / "qemu_configs/topologies").glob("*.yaml")):
        load_topology(p.stem, root=ROOT)


def test_reasons_must_be_the_architectures(root):
    msg = err(root, PROBE.format(t="base") + "arch: svm\nexpect:\n  reasons: [cpuidd]\n")
    assert msg.startswith("qemu_configs/scenarios/s.yaml:7: expect.reasons[0]: 'cpuidd' is no exit reason of svm")
    assert "an empty list judges nothing" in err(root, PROBE.format(t="base") + "expect:\n  reasons: []\n")
    assert "is no exit reason" in err(root, PROBE.format(t="base") + "arch: svm\nexpect:\n  exits: {CPUID: 1}\n")


def test_min_above_max_is_refused(root):
    msg = err(root, PROBE.format(t="base") + "expect:\n  exits:\n    cpuid: {min: 5, max: 1}\n")
    assert "expect.exits.cpuid: min 5 > max 1" in msg


def test_done_pattern_must_compile(root, tmp_path):
    k = write(tmp_path, "k.elf", "\x7fELF")
    msg = err(root, f"topology: base\nworkload:\n  kind: kernel\n  kernel: {k}\n  done_pattern: '(x'\n")
    assert "workload.done_pattern: not a regular expression" in msg


def test_each_op_once_and_within_its_own_limit(root):
    twice = "topology: base\nworkload:\n  ops:\n    - {op: cpuid, count: 4}\n    - {op: cpuid, count: 5}\n"
    assert "workload.ops[1].op: cpuid already runs as ops[0]" in err(root, twice)
    many = "topology: base\nworkload:\n  ops:\n    - {op: kicks, count: 200000}\n"
    assert "workload.ops[0].count: 200000 is more than op kicks allows" in err(root, many)


def test_l2_must_fit_in_l1(root):
    assert "--set topology.l2.memory=4096: 4096 MiB does not fit in L1's 2048 MiB" in err(root, PROBE.format(t="base"),
                                                                         ["topology.l2.memory=4096"])


def test_a_profile_the_model_cannot_answer_names_where_it_was_set(root):
    s = scenario(root, PROBE.format(t="base") + "profile: stock-vmx\n")
    with pytest.raises(ConfigError) as e:
        predict_scenario(s, "svm")
    assert str(e.value).startswith("qemu_configs/scenarios/s.yaml:5: profile: the model cannot answer for "
                                   "'stock-vmx' on svm")
    s = scenario(root, PROBE.format(t="base"), ["profile=stock-vmx"])
    with pytest.raises(ConfigError) as e:
        predict_scenario(s, "svm")
    assert str(e.value).startswith("--set profile=stock-vmx: the model cannot answer")
