"""The typed, validated configuration the lab and verdict consume."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hil.scenario.errors import ConfigError


@dataclass(frozen=True)
class L1Config:
    kernel: str
    series: str | None
    machine: str
    cpu: str
    smp: int
    memory: int
    append: str
    qemu_params: tuple[str, ...]
    boot_timeout: int
    snapshot: bool = True
    park_l2: bool = True                # L1 snapshotted with the L2 QEMU started paused (hil/lab/run.py)


@dataclass(frozen=True)
class VfioPciDevice:
    """An emulated PCI device L0 gives L1, which L1 assigns to L2 through VFIO."""
    model: str                          # edu (QEMU's educational device, PCI 1234:11e8)
    kind: str = "vfio-pci"


@dataclass(frozen=True)
class VirtioNetDevice:
    """A virtio-net NIC in L2 on a tap L1's agent creates (pyroute2)."""
    backend: str = "tap"
    vhost: bool = False                 # the in-kernel vhost-net backend instead of QEMU's
    bridge: bool = False                # put the tap into a bridge of its own
    kind: str = "virtio-net"


Device = VfioPciDevice | VirtioNetDevice
# what each probe op's `device` (hil/scenario/probe_ops.py) needs in the topology's l2.devices
OP_DEVICE_KINDS = {"edu": ("vfio-pci", "edu"), "virtio-net": ("virtio-net", None)}


@dataclass(frozen=True)
class L2Config:
    machine: str
    cpu: str
    smp: int
    memory: int
    kernel_irqchip: str
    cpu_pm: bool
    qemu_params: tuple[str, ...]
    timeout: int
    dedicated: str = "off"
    pin: tuple[int, ...] = ()
    devices: tuple[Device, ...] = ()

    def device(self, op_device: str) -> Device | None:
        """The device an op's `device` names (edu, virtio-net), if the topology gives L2 one."""
        kind, model = OP_DEVICE_KINDS[op_device]
        return next((d for d in self.devices if d.kind == kind and getattr(d, "model", None) == model), None)


@dataclass(frozen=True)
class Topology:
    name: str
    source: Path | None
    description: str
    accel: str
    timeout: int
    l1: L1Config
    l2: L2Config
    extends: tuple[str, ...] = ()      # the topologies this one extends, nearest first


@dataclass(frozen=True)
class ProbeOp:
    op: str
    count: int


@dataclass(frozen=True)
class Workload:
    kind: str
    ops: tuple[ProbeOp, ...]
    hlt_timer_us: int
    kernel: str | None
    append: str
    initrd: str | None
    done_pattern: str | None
    kick_interval_ms: int = 20
    race_timeout_us: int = 20000
    frame_interval_us: int = 2000
    dev_timeout_us: int = 5_000_000


@dataclass(frozen=True)
class Expect:
    reasons: str | tuple[str, ...]                 # "all" or the reasons to judge
    exits: dict[str, tuple[int, int | None]] = field(default_factory=dict)   # reason -> (min, max)


@dataclass(frozen=True)
class Scenario:
    name: str
    source: Path
    description: str
    topology: Topology
    profile: str
    arch: str
    groups: tuple[str, ...]
    workload: Workload
    expect: Expect
    overrides: tuple[str, ...] = ()
    # the cost model's host profile (a file hil calibrate wrote), resolved; None: none given
    host_profile: str | None = None
    # dotted key -> where its value was set: "FILE:LINE" or "--set KEY=VALUE" (topology keys
    # are "topology.l1.smp", whichever file of an `extends:` chain set them)
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    def error(self, key: str, message: str) -> ConfigError:
        """A configuration error found after loading, named where the key was set."""
        origin = self.origin(key)
        if origin.startswith("--set "):
            return ConfigError("--set", None, origin[len("--set "):], message)
        file, _, line = origin.rpartition(":")
        if file and line.isdigit():
            return ConfigError(file, int(line), key, message)
        return ConfigError(str(self.source), None, key, message)

    def origin(self, key: str) -> str:
        """Where `key` (or its closest ancestor that has one) was set."""
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key.rsplit(".", 1)[0] if "." in key else ""
        return str(self.source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self, dict_factory=lambda kv: {k: str(v) if isinstance(v, Path) else v for k, v in kv})
