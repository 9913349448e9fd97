"""Command lines per level are argv lists built from config (pure logic)."""
from pathlib import Path
from types import SimpleNamespace

from hil.lab.accel import choose_accel
from hil.lab.qemu.argv import l1_argv, l1_cpu, l2_argv

L1 = SimpleNamespace(machine="q35", cpu="auto", smp=2, memory=1024, append="foo=1; rm -rf /",
                     qemu_params=["-d", "guest_errors"])
L2 = SimpleNamespace(machine="microvm", cpu="host", smp=1, memory=64, kernel_irqchip="on", cpu_pm=True,
                     qemu_params=[])


def test_l1_cpu_follows_accel():
    assert (l1_cpu("auto", "tcg"), l1_cpu("auto", "kvm"), l1_cpu("EPYC", "tcg")) == ("max", "host", "EPYC")


def test_l1_argv_is_a_list_and_config_values_stay_single_arguments():
    argv = l1_argv(L1, accel="tcg", kernel=Path("/k"), initrd=Path("/i"), console_log=Path("/c.log"),
                   agent_socket=Path("/run/a.sock"))
    assert argv[argv.index("-machine") + 1] == "q35,accel=tcg"
    assert argv[argv.index("-cpu") + 1] == "max"
    append = argv[argv.index("-append") + 1]
    assert append.endswith("foo=1; rm -rf /")          # one argv item, never parsed by a shell
    assert argv[-2:] == ["-d", "guest_errors"]


def test_l1_argv_with_device_needs():
    argv = l1_argv(L1, accel="tcg", kernel=Path("/k"), initrd=Path("/i"), console_log=Path("/c.log"),
                   agent_socket=Path("/run/a.sock"), extra_append=["intel_iommu=on"],
                   machine_options=["kernel-irqchip=split"], devices=["-device", "intel-iommu", "-device", "edu"])
    assert argv[argv.index("-machine") + 1] == "q35,accel=tcg,kernel-irqchip=split"
    assert "intel_iommu=on" in argv[argv.index("-append") + 1].split()
    # the vIOMMU precedes every other PCI device (virtio-serial for the agent)
    assert argv.index("intel-iommu") < argv.index("edu") < argv.index("virtio-serial-pci,id=hilserial")


def test_l2_argv_cpu_pm_and_irqchip():
    argv = l2_argv(L2, append="ops=cpuid:1")
    assert argv[argv.index("-accel") + 1] == "kvm,kernel-irqchip=on"
    assert argv[argv.index("-overcommit") + 1] == "cpu-pm=on"
    assert "-initrd" not in argv


def test_accel_choice_without_kvm_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("hil.lab.accel.kvm_device_usable", lambda: (False, "/dev/kvm does not exist"))
    choice = choose_accel("auto", "img", lambda: (True, "unused"))
    assert (choice.accel, choice.probed) == ("tcg", False)
    assert choose_accel("tcg", "img", lambda: (True, "unused")).accel == "tcg"


def test_accel_boot_probe_runs_once_then_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr("hil.lab.accel.kvm_device_usable", lambda: (True, "present"))
    calls = []

    def probe():
        calls.append(1)
        return False, "agent never came up"

    first = choose_accel("auto", "img", probe)
    second = choose_accel("auto", "img", probe)
    assert (first.accel, first.probed, second.accel, second.probed) == ("tcg", True, "tcg", False)
    assert len(calls) == 1 and "cached" in second.reason


def test_snapshot_key_follows_image_and_l1_config(monkeypatch, tmp_path):
    from hil.lab import run as labrun
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(labrun, "qemu_version", lambda: "QEMU emulator version 10.0.2")
    l1 = SimpleNamespace(snapshot=True, memory=1024)
    none = SimpleNamespace(devices=())
    topo = SimpleNamespace(l1=l1, l2=none)
    img = SimpleNamespace(key="image-a")
    monkeypatch.setattr(labrun, "asdict", lambda c: dict(vars(c)))
    base = labrun.snapshot_path(topo, img, "tcg")
    assert base == labrun.snapshot_path(topo, img, "tcg")
    assert base != labrun.snapshot_path(topo, SimpleNamespace(key="image-b"), "tcg")
    assert base != labrun.snapshot_path(topo, img, "kvm")
    assert base != labrun.snapshot_path(SimpleNamespace(l1=SimpleNamespace(snapshot=True, memory=2048), l2=none),
                                        img, "tcg")
    assert labrun.snapshot_path(SimpleNamespace(l1=SimpleNamespace(snapshot=False, memory=1024), l2=none),
                                img, "tcg") is None
    # L2's devices change L0's machine (a vIOMMU, the edu device): another snapshot
    from hil.scenario.config import VfioPciDevice, VirtioNetDevice
    net = SimpleNamespace(l1=l1, l2=SimpleNamespace(devices=(VirtioNetDevice(),)))
    assert base != labrun.snapshot_path(net, img, "tcg") is not None
    # edu has no migration state in QEMU: a restored L1 would see it blank, so L1 boots
    edu = SimpleNamespace(l1=l1, l2=SimpleNamespace(devices=(VfioPciDevice("edu"),)))
    assert labrun.snapshot_path(edu, img, "tcg") is None
    monkeypatch.setattr(labrun, "qemu_version", lambda: "QEMU emulator version 7.2.0")
    assert labrun.snapshot_path(topo, img, "tcg") is None     # no 'file:' migration before 8.2
