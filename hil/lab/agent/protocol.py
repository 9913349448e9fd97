"""The agent protocol's data: what L0 asks of one L2 run and what the agent answers. One
serialisation each (to_json / from_json), used on both sides of the virtio-serial channel.
Standard library only: this runs in L1 too."""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from hil.lab.devices.base import DeviceSpec, device_from_json
from hil.lab.stimuli.base import StimulusSpec, spec_from_json


@dataclass(frozen=True)
class VcpuIoctl:
    """An ioctl a vCPU thread of L2's QEMU is made to issue (python-ptrace)."""
    vcpu: int
    request: int
    arg: int = 0


@dataclass
class L2Request:
    argv: list[str]                      # full L2 QEMU command line (no monitor; Machine adds it)
    serial_log: str                      # path the argv writes L2's serial console to
    done_pattern: str | None             # regex on the serial log that ends the run
    window: tuple[int, int] | None       # workload RIP window, or None for a foreign payload
    timeout: float = 180.0
    before_start: list[VcpuIoctl] = field(default_factory=list)   # issued before the guest runs
    after_done: list[VcpuIoctl] = field(default_factory=list)     # issued once the workload is done
    settle: float = 0.5                  # seconds to let the guest react to after_done
    pin: list[int] = field(default_factory=list)                  # L1 CPU per vCPU thread, in vCPU order
    stimuli: list[StimulusSpec] = field(default_factory=list)     # hil/lab/stimuli
    serial_cap: int = 1 << 20            # bytes of L2 serial output read back at most
    devices: list[DeviceSpec] = field(default_factory=list)       # hil/lab/devices: set up in L1, argv for L2
    ops: list[str] = field(default_factory=list)                  # the probe's ops in order: progress per op

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["devices"] = [dev.to_json() for dev in self.devices]
        d["before_start"] = [asdict(a) for a in self.before_start]
        d["after_done"] = [asdict(a) for a in self.after_done]
        d["stimuli"] = [s.to_json() for s in self.stimuli]
        d["window"] = list(self.window) if self.window else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "L2Request":
        w = d.get("window")
        return cls(argv=[str(a) for a in d["argv"]], serial_log=str(d["serial_log"]),
                   done_pattern=d.get("done_pattern"), window=(int(w[0]), int(w[1])) if w else None,
                   timeout=float(d.get("timeout", 180.0)),
                   before_start=[VcpuIoctl(**a) for a in d.get("before_start", [])],
                   after_done=[VcpuIoctl(**a) for a in d.get("after_done", [])],
                   settle=float(d.get("settle", 0.5)), pin=[int(c) for c in d.get("pin", [])],
                   stimuli=[spec_from_json(s) for s in d.get("stimuli", [])],
                   serial_cap=int(d.get("serial_cap", 1 << 20)),
                   devices=[device_from_json(x) for x in d.get("devices", [])],
                   ops=[str(o) for o in d.get("ops", [])])


QEMU_LOG_CAP = 64 << 10


@dataclass
class L2Result:
    exits_all: list[dict[str, int]]
    exits_window: list[dict[str, int]]
    pio: list[dict[str, int]]
    userspace_exits: list[dict[str, int]]
    stats: dict[str, dict[str, Any]]     # qom path (or "vm") -> stat name -> value
    serial: str
    exitcode: int | None
    ended_by: str                        # "done" | "exit" | "timeout"
    timings: dict[str, float] = field(default_factory=dict)
    qemu_version: str = ""
    dropped: dict[str, int] = field(default_factory=dict)   # hist trigger -> events it dropped
    injected: list[dict[str, int]] = field(default_factory=list)   # each ioctl hil injected, with its result
    hists: dict[str, list[dict[str, int]]] = field(default_factory=dict)   # accepted irqs, dedicated kicks/NMIs
    stimuli: dict[str, dict[str, Any]] = field(default_factory=dict)       # stimulus kind -> its result
    stats_error: str = ""                # why KVM's counters could not be read, if they were not
    serial_truncated: bool = False
    argv: list[str] = field(default_factory=list)                          # L2's QEMU as run (devices added)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)       # device kind -> set-up and host counts
    qemu_log: str = ""                   # L2 QEMU's own output (its last QEMU_LOG_CAP bytes)
    parked: bool = False                 # L2's QEMU was the one parked (started paused) before L1's snapshot

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "L2Result":
        """Raises ValueError naming what is missing when the agent's answer is not a result."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"agent result lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in names})
