"""Values the model speaks in: counts with bounds, operations, predictions."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hil.model.errors import ModelError


def _is_count(n: object) -> bool:
    return type(n) is int and n >= 0      # bool is an int subclass: refused on purpose


@dataclass(frozen=True)
class Bound:
    """An inclusive range of counts; high None means unbounded above (noise).
    Always 0 <= low <= high: a Bound that says otherwise cannot be built."""
    low: int
    high: int | None

    def __post_init__(self) -> None:
        if not _is_count(self.low) or not (self.high is None or _is_count(self.high)):
            raise ModelError(f"Bound({self.low!r}, {self.high!r}): bounds are integers >= 0 (high may be None)")
        if self.high is not None and self.high < self.low:
            raise ModelError(f"Bound({self.low}, {self.high}): low > high")

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
        if not _is_count(k):
            raise ModelError(f"a Bound scales by a count (an integer >= 0), got {k!r}")
        return Bound(self.low * k, None if self.high is None else self.high * k)

    __rmul__ = __mul__

    def to_json(self) -> int | dict[str, int | None]:
        return self.low if self.exact else {"low": self.low, "high": self.high}


ZERO = Bound(0, 0)
ONE = Bound(1, 1)
NOISE = Bound(0, None)


@dataclass(frozen=True)
class Operation:
    """`count` occurrences of `event` with `params` (pairs, or a mapping, normalised to sorted
    pairs). Checked when built, so predict() can trust every operation it folds."""
    event: str
    count: int
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.event, str):
            raise ModelError(f"an operation's event is a name, got {self.event!r}")
        if not _is_count(self.count):
            raise ModelError(f"count of {self.event} must be an integer >= 0, got {self.count!r}")
        params = self.params
        items = params.items() if isinstance(params, Mapping) else params
        try:
            pairs = tuple(sorted((k, v) for k, v in items))
        except (TypeError, ValueError):
            raise ModelError(f"{self.event}: parameters are name=value pairs of strings, got {params!r}") from None
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in pairs):
            raise ModelError(f"{self.event}: parameters are name=value pairs of strings, got {params!r}")
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            raise ModelError(f"{self.event}: parameter given twice in {params!r}")
        if pairs != params:
            object.__setattr__(self, "params", pairs)

    @classmethod
    def of(cls, event: str, count: int, **params: str) -> "Operation":
        return cls(event, count, tuple(sorted(params.items())))


@dataclass
class Prediction:
    profile: str
    arch: str
    exits: dict[str, Bound] = field(default_factory=dict)      # reason name -> bound; absent = 0
    # KVM vCPU stats (the era's names), plus userspace_exits, which no KVM stat counts: the lab
    # counts it from the kvm_userspace_exit tracepoint
    counters: dict[str, Bound] = field(default_factory=dict)
    guest_interrupts: Bound = ZERO                              # taken through the guest IDT, right vector
    bounces: Bound = ZERO                                       # exits handled on the online CPU
    delivered: bool = True
    handled_on: dict[str, str] = field(default_factory=dict)   # reason -> "dedicated" | "online" | "host"
    assumptions: list[str] = field(default_factory=list)
    # host interrupts taken through the guest IDT at a host vector (external-interrupt exiting off)
    misdelivered: Bound = ZERO
    # the ambient term, named apart (already inside exits): exits nobody's event caused (host
    # noise on the vCPU's pCPU) and the assumptions that bound them
    ambient: dict[str, Bound] = field(default_factory=dict)
    ambient_assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "arch": self.arch,
            "exits": {r: b.to_json() for r, b in sorted(self.exits.items())},
            "counters": {c: b.to_json() for c, b in sorted(self.counters.items())},
            "guest_interrupts": self.guest_interrupts.to_json(), "bounces": self.bounces.to_json(),
            "misdelivered": self.misdelivered.to_json(),
            "delivered": self.delivered, "handled_on": self.handled_on, "assumptions": self.assumptions,
            "ambient": {"exits": {r: b.to_json() for r, b in sorted(self.ambient.items())},
                        "assumptions": self.ambient_assumptions},
        }
