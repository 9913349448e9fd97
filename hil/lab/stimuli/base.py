"""The two halves of an interrupt source: a spec (JSON across the lab boundary) and the
driver the agent runs in L1."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Protocol

from hil.lab.kvm.tracing import Tracefs


class L2Handle(Protocol):
    """What a driver may use of the running L2: its QEMU (QMP, pid) and L1's tracefs."""
    @property
    def pid(self) -> int: ...
    def command(self, cmd: str, **args: Any) -> Any: ...
    @property
    def trace(self) -> Tracefs: ...


class Driver:
    """Agent-side hooks, called by the L2 run in this order; each may do nothing."""

    def before_start(self, vm: L2Handle) -> None:
        """QEMU is up and paused: set up (the guest has not run yet)."""

    def on_serial(self, text: str, vm: L2Handle) -> None:
        """The guest's serial output so far: trigger what is due."""

    def finish(self, vm: L2Handle) -> None:
        """The workload is over and L2 paused (or gone): read the counters that end the run."""

    def result(self) -> dict[str, Any]:
        """What it did and counted, JSON-able."""
        return {}


@dataclass(frozen=True)
class StimulusSpec:
    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    def driver(self) -> Driver:
        raise NotImplementedError


def spec_from_json(d: dict[str, Any]) -> StimulusSpec:
    from hil.lab.stimuli.host_interrupts import HostInterruptsPerOp
    from hil.lab.stimuli.io_thread_msi import IoThreadMsi
    from hil.lab.stimuli.net_frames import FrameCounter, FrameSender
    kinds: dict[str, type[StimulusSpec]] = {c.kind: c for c in (IoThreadMsi, HostInterruptsPerOp, FrameSender,
                                                                FrameCounter)}
    if d.get("kind") not in kinds:
        raise ValueError(f"unknown stimulus kind {d.get('kind')!r} (known: {', '.join(kinds)})")
    cls = kinds[d["kind"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
