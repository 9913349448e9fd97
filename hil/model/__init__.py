"""INTERIM slice of the reference model (the full model replaces this file): just enough
semantics for the probe's operations under stock and disable-exits profiles."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence


class ModelError(ValueError):
    pass


@dataclass(frozen=True)
class Bound:
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


@dataclass(frozen=True)
class Operation:
    event: str
    count: int
    params: tuple[tuple[str, str], ...] = ()


@dataclass
class Prediction:
    profile: str
    arch: str
    exits: dict[str, Bound] = field(default_factory=dict)
    counters: dict[str, Bound] = field(default_factory=dict)
    guest_interrupts: Bound = Bound(0, 0)
    bounces: Bound = Bound(0, 0)
    delivered: bool = True
    assumptions: list[str] = field(default_factory=list)


_SVM = {0x60: "interrupt", 0x61: "nmi", 0x64: "vintr", 0x72: "cpuid", 0x78: "hlt", 0x7B: "io", 0x7C: "msr", 0x400: "npf"}
_VMX = {0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 7: "INTERRUPT_WINDOW", 10: "CPUID", 12: "HLT",
        30: "IO_INSTRUCTION", 31: "MSR_READ", 32: "MSR_WRITE", 48: "EPT_VIOLATION", 52: "PREEMPTION_TIMER"}
PROFILES: Mapping[str, str] = {"stock-svm": "svm", "stock-vmx": "vmx", "disable-exits": "any", "disable-exits-hlt": "any"}
EVENTS: Mapping[str, str] = {e: e for e in ("cpuid", "pio-kernel", "pio-user", "msr", "timer", "hlt", "eoi")}


def exit_reasons(arch: str) -> Mapping[int, str]:
    return _SVM if arch == "svm" else _VMX


def reason_name(arch: str, code: int) -> str:
    return exit_reasons(arch).get(code, f"{code:#x}")


def predict(ops: Sequence[Operation], profile: str, arch: str, *, apic: str = "x2apic") -> Prediction:
    if profile not in PROFILES:
        raise ModelError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    svm = arch == "svm"
    n = {"cpuid": "cpuid" if svm else "CPUID", "io": "io" if svm else "IO_INSTRUCTION", "hlt": "hlt" if svm else "HLT",
         "msr_r": "msr" if svm else "MSR_READ", "msr_w": "msr" if svm else "MSR_WRITE",
         "intr": "interrupt" if svm else "EXTERNAL_INTERRUPT"}
    hlt_exits = not profile.startswith("disable-exits")
    p = Prediction(profile, arch, {n["intr"]: Bound(0, None)})
    forced_intr = 0

    def add(reason: str, k: int) -> None:
        p.exits[reason] = p.exits.get(reason, Bound(0, 0)) + Bound(k, k)

    for op in ops:
        c = op.count
        if op.event == "cpuid":
            add(n["cpuid"], c)
        elif op.event in ("pio-kernel", "pio-user"):
            add(n["io"], c)
        elif op.event == "msr":
            add(n["msr_r"], c)
        elif op.event in ("timer", "eoi"):
            add(n["msr_w"], c)
        elif op.event == "hlt":
            if hlt_exits:
                add(n["hlt"], c)
            else:
                forced_intr += c   # halted in guest mode: the wake-up is a host interrupt exit
        else:
            raise ModelError(f"unknown event {op.event!r}")
    p.exits[n["intr"]] = Bound(forced_intr, None)
    return p


def predict_event(profile: str, arch: str, event: str, count: int, **params: str) -> Prediction:
    return predict([Operation(event, count, tuple(params.items()))], profile, arch)
