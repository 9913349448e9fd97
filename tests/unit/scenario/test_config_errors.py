"""Every config mistake names file, line and key (or the --set override), never a traceback."""
from pathlib import Path

import pytest

from hil.scenario import ConfigError, list_scenarios, load_scenario, load_topology

ROOT = Path(__file__).resolve().parents[3]


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def root(tmp_path):
    write(tmp_path, "qemu_configs/topologies/t.yaml", "accel: tcg\nl1:\n  smp: 2\nl2:\n  memory: 64\n")
    return tmp_path


SCEN = """topology: t
workload:
  kind: probe
  ops:
    - {op: cpuid, count: 4}
"""


def err(root, text, overrides=(), **kw) -> str:
    write(root, "qemu_configs/scenarios/s.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_scenario("s", root=root, overrides=overrides, **kw)
    return str(e.value)


def test_good_scenario_loads_with_defaults(root):
    write(root, "qemu_configs/scenarios/s.yaml", SCEN)
    s = load_scenario("s", root=root)
    assert s.topology.accel == "tcg" and s.topology.l1.memory == 1024 and s.topology.l2.kernel_irqchip == "on"
    assert [(o.op, o.count) for o in s.workload.ops] == [("cpuid", 4)]
    assert s.expect.reasons == "all"


def test_unknown_key_with_suggestion(root):
    msg = err(root, SCEN + "profle: stock-svm\n")
    assert msg == "qemu_configs/scenarios/s.yaml:6: profle: unknown key 'profle' (did you mean 'profile'?)"


def test_wrong_type_names_line_and_key(root):
    msg = err(root, SCEN.replace("count: 4", "count: ten"))
    assert msg.startswith("qemu_configs/scenarios/s.yaml:5: workload.ops[0].count: expected an integer")


def test_bad_enum_lists_valid_values(root):
    msg = err(root, SCEN.replace("op: cpuid", "op: cpuidd"))
    assert "s.yaml:5: workload.ops[0].op: 'cpuidd' is not one of cpuid, pio-kernel" in msg


def test_missing_required_key_names_parent_line(root):
    msg = err(root, "topology: t\nworkload:\n  kind: probe\n  ops:\n    - {count: 4}\n")
    assert msg == "qemu_configs/scenarios/s.yaml:5: workload.ops[0]: missing required key 'op'"


def test_error_in_topology_file_names_that_file(root):
    write(root, "qemu_configs/topologies/t.yaml", "accel: tcg\nl1:\n  smp: many\n")
    msg = err(root, SCEN)
    assert msg.startswith("qemu_configs/topologies/t.yaml:3: l1.smp: expected an integer")


def test_inline_topology_errors_are_prefixed(root):
    msg = err(root, SCEN.replace("topology: t", "topology:\n  accel: warp"))
    assert msg.startswith("qemu_configs/scenarios/s.yaml:2: topology.accel: 'warp' is not one of auto, kvm, tcg")


def test_missing_topology_file(root):
    msg = err(root, SCEN.replace("topology: t", "topology: nope"))
    assert msg.startswith("qemu_configs/scenarios/s.yaml:1: topology: no such topology: qemu_configs/topologies/nope.yaml")


def test_missing_kernel_file(root):
    msg = err(root, "topology: t\nworkload:\n  kind: kernel\n  kernel: /no/such/vmexit.flat\n")
    assert msg == "qemu_configs/scenarios/s.yaml:4: workload.kernel: file not found: /no/such/vmexit.flat"


def test_missing_scenario_file(root):
    with pytest.raises(ConfigError) as e:
        load_scenario("absent", root=root)
    assert "no such scenario file" in str(e.value)


def test_yaml_syntax_error_names_line(root):
    msg = err(root, SCEN + "groups: [a, b\n")
    assert msg.startswith("qemu_configs/scenarios/s.yaml:7: <top>: YAML syntax")


def test_duplicate_key(root):
    msg = err(root, SCEN + "profile: a\nprofile: b\n")
    assert msg == "qemu_configs/scenarios/s.yaml:7: profile: duplicate key"


def test_unknown_profile_when_profiles_given(root):
    msg = err(root, SCEN + "profile: stock-svn\n", valid_profiles=["stock-svm", "stock-vmx"])
    assert msg == "qemu_configs/scenarios/s.yaml:6: profile: unknown profile 'stock-svn' (did you mean 'stock-svm'?)"


@pytest.mark.parametrize("override,expected", [
    ("workload.ops.0.cout=3", "--set workload.ops.0.cout=3: unknown key 'cout' (did you mean 'count'?)"),
    ("workload.ops.0.count=three", "--set workload.ops.0.count=three: expected an integer, got str 'three'"),
    ("workload.ops.4.count=1", "--set workload.ops.4.count=1: no list item '4' (the list has 1)"),
    ("topology.l1.memroy=2048", "--set topology.l1.memroy=2048: unknown key 'memroy' (did you mean 'memory'?)"),
    ("topology.l1.memory=12", "--set topology.l1.memory=12: 12 is out of range [256, 16384]"),
    ("workload", "--set workload: expected KEY=VALUE"),
])
def test_bad_overrides_name_the_override(root, override, expected):
    assert err(root, SCEN, overrides=[override]) == expected


def test_good_overrides_apply(root):
    write(root, "qemu_configs/scenarios/s.yaml", SCEN)
    s = load_scenario("s", root=root, overrides=["workload.ops.0.count=32", "topology.l1.memory=2048",
                                                   "topology.l2.cpu_pm=true", "profile=disable-exits"])
    assert (s.workload.ops[0].count, s.topology.l1.memory, s.topology.l2.cpu_pm, s.profile) == (32, 2048, True, "disable-exits")


def test_yaml_boolean_on_means_on(root):
    write(root, "qemu_configs/topologies/t.yaml", "l2:\n  kernel_irqchip: off\n")
    write(root, "qemu_configs/scenarios/s.yaml", SCEN)
    assert load_scenario("s", root=root).topology.l2.kernel_irqchip == "off"


def test_shipped_configs_load():
    names = list_scenarios(ROOT)
    assert "probe-basic" in names
    for name in names:
        if name == "foreign-kernel":
            with pytest.raises(ConfigError, match="workload.kernel: file not found"):
                load_scenario(name, root=ROOT)
            continue
        s = load_scenario(name, root=ROOT)
        assert s.workload.ops
    assert load_topology("nested-svm", root=ROOT).l2.kernel_irqchip == "on"


def test_dedicated_mode_needs_a_series(root):
    write(root, "qemu_configs/topologies/t.yaml", "l2:\n  dedicated: v2\n")
    msg = err(root, SCEN)
    assert msg.startswith("qemu_configs/topologies/t.yaml:2: l2.dedicated: dedicated mode needs a kernel series")


def test_pin_needs_one_existing_l1_cpu_per_vcpu(root):
    write(root, "qemu_configs/topologies/t.yaml", "l1:\n  smp: 2\nl2:\n  smp: 2\n  pin: [1]\n")
    assert err(root, SCEN).startswith("qemu_configs/topologies/t.yaml:5: l2.pin: one L1 CPU per vCPU: 1 given")
    write(root, "qemu_configs/topologies/t.yaml", "l1:\n  smp: 2\nl2:\n  smp: 2\n  pin: [1, 2]\n")
    assert "l2.pin: L1 CPU 2 does not exist (l1.smp is 2)" in err(root, SCEN)
    write(root, "qemu_configs/topologies/t.yaml", "l1:\n  smp: 2\nl2:\n  smp: 2\n  pin: [1, 0]\n  dedicated: off\n")
    write(root, "qemu_configs/scenarios/s.yaml", SCEN)
    topo = load_scenario("s", root=root).topology
    assert topo.l2.pin == (1, 0) and topo.l2.dedicated == "off"     # bare YAML off, not False


def test_ipi_race_needs_a_kicker_vcpu_and_one_kicks_op(root):
    race = SCEN.replace("{op: cpuid, count: 4}", "{op: ipi-race, count: 10}")
    assert "workload.ops[0].op: ipi-race needs 2 L2 vCPUs (topology l2.smp is 1)" in err(root, race)
    twice = SCEN.replace("- {op: cpuid, count: 4}", "- {op: kicks, count: 2}\n    - {op: kicks, count: 3}")
    assert "workload.ops[1].op: kicks already runs as ops[0]: each op at most once" in err(root, twice)
