"""l2.devices: one schema per kind, mistakes at file:line, ops that need a device find it."""
from pathlib import Path

import pytest

from hil.scenario import ConfigError, load_scenario
from hil.scenario.config import VfioPciDevice, VirtioNetDevice

ROOT = Path(__file__).resolve().parents[3]


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def scenario(root: Path, topology: str, op: str = "dev-msi", overrides=()):
    write(root, "qemu_configs/topologies/t.yaml", topology)
    write(root, "qemu_configs/scenarios/s.yaml", f"topology: t\nworkload:\n  kind: probe\n  ops:\n"
                                                  f"    - {{op: {op}, count: 7}}\n")
    return load_scenario("s", root=root, overrides=overrides)


def error(root: Path, topology: str, op: str = "dev-msi", overrides=()) -> str:
    with pytest.raises(ConfigError) as e:
        scenario(root, topology, op, overrides)
    return str(e.value)


EDU = "l2:\n  machine: q35\n  devices:\n    - {kind: vfio-pci, model: edu}\n"
NET = "l2:\n  machine: q35\n  devices:\n    - kind: virtio-net\n      vhost: on\n"


def test_devices_become_typed_entries(tmp_path):
    assert scenario(tmp_path, EDU).topology.l2.devices == (VfioPciDevice("edu"),)
    # a bare YAML `on` is vhost on
    net = scenario(tmp_path, NET, op="net-rx").topology.l2
    assert net.devices == (VirtioNetDevice(backend="tap", vhost=True, bridge=False),)
    assert net.device("virtio-net") == net.devices[0] and net.device("edu") is None


def test_unknown_device_model_is_an_error_at_its_line(tmp_path):
    msg = error(tmp_path, EDU.replace("model: edu", "model: e1000"))
    assert msg.startswith("qemu_configs/topologies/t.yaml:4: l2.devices[0].model: 'e1000' is not one of edu")


def test_unknown_kind_and_unknown_key(tmp_path):
    assert error(tmp_path, EDU.replace("vfio-pci", "vfio-pcie")).startswith(
        "qemu_configs/topologies/t.yaml:4: l2.devices[0].kind: unknown device kind 'vfio-pcie' (did you mean 'vfio-pci'?)")
    msg = error(tmp_path, NET + "      queues: 2\n", op="net-rx")
    assert msg.startswith("qemu_configs/topologies/t.yaml:6: l2.devices[0].queues: unknown key 'queues'")


def test_a_device_op_needs_its_device(tmp_path):
    msg = error(tmp_path, NET, op="dev-msi")
    assert msg.startswith("qemu_configs/scenarios/s.yaml:5: workload.ops[0].op: dev-msi needs an edu device in L2")
    assert "nested-svm-edu" in msg
    assert "needs an virtio-net device" in error(tmp_path, EDU, op="net-tx")


def test_devices_need_a_pci_machine(tmp_path):
    msg = error(tmp_path, EDU.replace("q35", "microvm"))
    assert msg.startswith("qemu_configs/topologies/t.yaml:2: l2.machine: L2's devices need PCI")
    assert scenario(tmp_path, EDU.replace("q35", "microvm,pcie=on")).topology.l2.machine == "microvm,pcie=on"


def test_override_names_the_override(tmp_path):
    msg = error(tmp_path, EDU, overrides=["topology.l2.devices.0.model=nic"])
    assert msg.startswith("--set topology.l2.devices.0.model=nic") and "'nic' is not one of edu" in msg


def test_one_device_of_each_kind(tmp_path):
    msg = error(tmp_path, EDU + "    - {kind: vfio-pci, model: edu}\n")
    assert "l2.devices[1]: a second vfio-pci device" in msg


def test_shipped_device_scenarios_load():
    for name, kind in (("device-edu-msi", "vfio-pci"), ("device-edu-dma", "vfio-pci"), ("virtio-net-rx", "virtio-net"),
                       ("virtio-net-tx-vhost", "virtio-net")):
        s = load_scenario(name, root=ROOT)
        assert [d.kind for d in s.topology.l2.devices] == [kind]
        assert s.topology.extends[-1].endswith("nested-svm.yaml")
