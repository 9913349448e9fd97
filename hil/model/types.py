"""Values the model speaks in: counts with bounds, operations, predictions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Bound:
    """An inclusive range of counts; high None means unbounded above (noise)."""
    low: int
    high: int | None

    @classmethod
    def exactly(cls, n: int) -> "Bound":
        return cls(n, n)

    @classmethod
    def at_least(cls, n: int) -> "Bound":
        return cls(n, None)

    @property
    def exact(self) -> bool:
        return self.high == self.low

    def contains(self, n: int) -> bool:
        return n >= self.low and (self.high is None or n <= self.high)

    def __add__(self, other: "Bound") -> "Bound":
        high = None if self.high is None or other.high is None else self.high + other.high
        return Bound(self.low + other.low, high)

    def __mul__(self, k: int) -> "Bound":
        return Bound(self.low * k, None if self.high is None else self.high * k)

    __rmul__ = __mul__

    def to_json(self) -> int | dict[str, int | None]:
        return self.low if self.exact else {"low": self.low, "high": self.high}


ZERO = Bound(0, 0)
ONE = Bound(1, 1)
NOISE = Bound(0, None)


@dataclass(frozen=True)
class Operation:
    event: str
    count: int
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, event: str, count: int, **params: str) -> "Operation":
        return cls(event, count, tuple(sorted(params.items())))


@dataclass
class Prediction:
    profile: str
    arch: str
    exits: dict[str, Bound] = field(default_factory=dict)      # reason name -> bound; absent = 0
    counters: dict[str, Bound] = field(default_factory=dict)   # KVM vCPU stat -> bound
    guest_interrupts: Bound = ZERO
    bounces: Bound = ZERO                                       # exits handled on the online CPU
    delivered: bool = True
    handled_on: dict[str, str] = field(default_factory=dict)   # reason -> "dedicated" | "online" | "host"
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "arch": self.arch,
            "exits": {r: b.to_json() for r, b in sorted(self.exits.items())},
            "counters": {c: b.to_json() for c, b in sorted(self.counters.items())},
            "guest_interrupts": self.guest_interrupts.to_json(), "bounces": self.bounces.to_json(),
            "delivered": self.delivered, "handled_on": self.handled_on, "assumptions": self.assumptions,
        }
