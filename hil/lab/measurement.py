"""What the lab measured in one run, with names resolved and provenance attached."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class OpMeasurement:
    op: str
    count: int | None            # what the probe reported doing (None: it never said)
    exits: dict[str, int]        # reason name -> exits at RIPs inside this op's code
    tsc: int | None = None
    reported: dict[str, Any] = field(default_factory=dict)   # the probe's own line, e.g. hlts=


@dataclass
class Measurement:
    arch: str
    ops: list[OpMeasurement]
    exits_all: dict[str, int]            # the whole L2 run, every reason
    exits_window_unattributed: dict[str, int]
    pio: dict[str, int]                  # "0x4d0/in" -> count over the whole run
    userspace_exits: dict[str, int]      # KVM_EXIT_* reason -> count over the whole run
    counters: dict[str, int]             # KVM's own vCPU stats, summed over vCPUs
    probe_events: list[dict[str, str]]
    ended_by: str
    provenance: dict[str, Any]
    timings: dict[str, float]
    logs: dict[str, str] = field(default_factory=dict)
    # kicks of vCPU 0 as KVM saw them (see hil.lab.run.kick_trace); empty when none were sent
    kick_trace: dict[str, Any] = field(default_factory=dict)

    def op(self, name: str) -> OpMeasurement | None:
        return next((o for o in self.ops if o.op == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
