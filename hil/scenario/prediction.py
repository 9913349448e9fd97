"""What the model predicts for a scenario's workload: each probe op is a fixed sequence of
model events per iteration (the probe's own code decides which; see guest/probe.c)."""
from __future__ import annotations

from hil.model import Operation, Prediction, predict

# probe op -> model events executed once per iteration, with the parameters that matter.
PROBE_EVENTS: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = {
    "cpuid": (("cpuid", ()),),
    "pio-kernel": (("pio-kernel", ()),),
    "pio-user": (("pio-user", ()),),
    "msr": (("msr", (("msr", "apic-base"), ("access", "read"))),),
    # arm the x2APIC one-shot timer (TMICT write) with interrupts off, sti; hlt, the handler writes EOI
    "hlt": (("timer", (("apic", "x2apic"), ("armed_with", "interrupts-off"))), ("hlt", ()),
            ("eoi", (("apic", "x2apic"),))),
    # spin with interrupts on; each kick's interrupt (I/O-thread MSI, or vCPU 1's IPI) is taken
    # and EOIed by the handler
    "kicks": (("interrupt-in", (("guest_state", "running"),)), ("eoi", (("apic", "x2apic"),))),
    "ipi-race": (("interrupt-in", (("guest_state", "running"),)), ("eoi", (("apic", "x2apic"),))),
}


def resolve_profile(profile: str, arch: str) -> str:
    return f"stock-{arch}" if profile == "auto" else profile


def model_operations(op: str, count: int) -> list[Operation]:
    return [Operation(event, count, params) for event, params in PROBE_EVENTS[op]]


def predict_op(op: str, count: int, profile: str, arch: str) -> Prediction:
    return predict(model_operations(op, count), profile, arch, apic="x2apic")
