"""A parameterised cost model: cycles per mechanism, from a host profile, giving each
event's latency and the latency distribution of a mixed workload."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from hil.model.errors import ModelError
from hil.model.predict import _effect, check_arch, profile as get_profile
from hil.model.types import ZERO, Operation


@dataclass(frozen=True)
class HostCosts:
    """Cycles. Defaults and their sources are in qemu_configs/host_profiles/default.yaml."""
    exit_entry: int = 2000          # one VM exit + entry, direct cost (SplitX: ~2,000 cycles, X5570)
    ipi: int = 3300                 # IPI delivery to a vCPU (kvm-unit-tests vmexit 'ipi', 3293-4238 cycles)
    nmi: int = 3300                 # NMI delivery (assumed like an IPI)
    injection: int = 500            # virtual interrupt injection at entry
    bounce: int = 12000             # a slave exit handled on the online CPU: VMCLEAR/VMPTRLD + IPI + wakeup
    userspace: int = 8000           # a KVM_RUN return to QEMU and back
    guest_handler: int = 300        # the guest's own interrupt handler
    halt_wakeup: int = 6000         # waking a vCPU thread blocked in halt

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], source: str = "host profile") -> "HostCosts":
        known = {f.name for f in fields(cls)}
        values = dict(data.get("cycles", data)) if isinstance(data, Mapping) else {}
        for k, v in values.items():
            if k not in known:
                raise ModelError(f"{source}: cycles.{k}: unknown cost; valid: {', '.join(sorted(known))}")
            if not isinstance(v, int) or v < 0:
                raise ModelError(f"{source}: cycles.{k}: expected a non-negative integer, got {v!r}")
        return cls(**values)  # type: ignore[arg-type]


def event_latency(op: Operation, profile_name: str, costs: HostCosts, apic: str = "x2apic",
                  arch: str | None = None) -> int:
    """Cycles from the event to the guest having handled it, one occurrence (upper bounds
    of noisy exits ignored: ambient noise is not the event's cost). arch: the profile's first
    architecture unless given."""
    p = get_profile(profile_name)
    arch = arch or p.arches[0]
    check_arch(p, arch)
    e = _effect(p.name, arch, op.event, op.params, apic)
    cycles = sum(b.low for b in e.exits.values()) * costs.exit_entry
    cycles += e.bounces.low * costs.bounce + e.guest_interrupts.low * costs.guest_handler
    cycles += e.counters.get("userspace_exits", ZERO).low * costs.userspace
    cycles += e.counters.get("irq_injections", ZERO).low * costs.injection
    cycles += e.counters.get("halt_wakeup", ZERO).low * costs.halt_wakeup
    if "EXTINT" in e.exits or "NMI" in e.exits:
        cycles += costs.ipi if "EXTINT" in e.exits else costs.nmi
    return cycles


def latency_distribution(ops: Sequence[Operation], profile_name: str, costs: HostCosts) -> dict[int, int]:
    """Histogram cycles -> occurrences for a mixed workload (closed form: per-event latency x count)."""
    hist: dict[int, int] = {}
    for op in ops:
        lat = event_latency(op, profile_name, costs)
        hist[lat] = hist.get(lat, 0) + op.count
    return dict(sorted(hist.items()))


def percentile(hist: Mapping[int, int], q: float) -> int:
    total = sum(hist.values())
    seen = 0
    for value, n in sorted(hist.items()):
        seen += n
        if seen >= q * total:
            return value
    return max(hist) if hist else 0
