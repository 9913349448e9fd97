"""The events a test can trigger, with the parameters that change the answer."""
from __future__ import annotations

from dataclasses import dataclass, field

from hil.model.errors import ModelError, unknown

APIC = ("x2apic", "xapic")
STATE = ("running", "halted")
DIRECT = ("on", "off")      # slave-v2's direct mode: off while a virtual interrupt is in service


@dataclass(frozen=True)
class EventSpec:
    name: str
    doc: str
    params: dict[str, tuple[str, ...]] = field(default_factory=dict)   # first value is the default
    deterministic: bool = True          # exits exactly count x per-event (no timing dependence)

    def resolve(self, given: dict[str, str], apic: str) -> dict[str, str]:
        out = {k: v[0] for k, v in self.params.items()}
        if "apic" in self.params:
            out["apic"] = apic
        for k, v in given.items():
            if k not in self.params:
                if not self.params:
                    raise ModelError(f"event {self.name} takes no parameters, got {k}={v}")
                raise unknown(f"parameter of event {self.name}", k, self.params)
            if v not in self.params[k]:
                raise ModelError(f"event {self.name}: {k}={v!r} is not one of {', '.join(self.params[k])}")
            out[k] = v
        return out


EVENTS: dict[str, EventSpec] = {e.name: e for e in (
    EventSpec("cpuid", "guest executes CPUID"),
    EventSpec("hlt", "guest executes HLT with interrupts enabled; woken by the next event"),
    EventSpec("mwait", "guest executes MWAIT (KVM emulates it as a no-op while MWAIT exits)"),
    EventSpec("pause-spin", "guest spins on PAUSE past the pause-loop window (PLE / pause filter)"),
    EventSpec("pio-kernel", "port I/O to a device KVM emulates in the kernel (e.g. PIC ELCR 0x4d0)"),
    EventSpec("pio-user", "port I/O to a device QEMU emulates (KVM_EXIT_IO)"),
    EventSpec("mmio-user", "MMIO to a device QEMU emulates (KVM_EXIT_MMIO), steady state after the first access"),
    EventSpec("msr", "guest reads or writes an MSR (x2apic-tmict/-tmcct: the x2APIC timer registers; "
              "cstate-residency: a core C-state residency counter, read)",
              {"access": ("read", "write"),
               "msr": ("apic-base", "tsc-deadline", "other", "x2apic-tmict", "x2apic-tmcct", "cstate-residency")}),
    EventSpec("msi-assigned", "an assigned (passed-through) device raises an MSI for this vCPU (direct: slave-v2's "
              "direct mode when it arrives)", {"guest_state": STATE, "direct": DIRECT}, deterministic=False),
    EventSpec("ipi", "this vCPU sends a fixed IPI to another vCPU of the guest (both vCPUs' exits, summed)",
              {"apic": APIC, "target_state": STATE}, deterministic=False),
    EventSpec("kick", "the host kicks the vCPU (a request from the I/O thread, irqfd, another vCPU)",
              {"guest_state": ("running", "halted", "outside")}, deterministic=False),
    EventSpec("interrupt-in", "an interrupt for this vCPU from outside it (an emulated device's MSI from "
              "QEMU's I/O thread, another vCPU's IPI): a kick, then a virtual injection (returning: it "
              "answers the vCPU's own exit, e.g. a virtio notify, and races the vCPU's way back in; busy: "
              "the vCPU polls in guest mode but exits for its own reasons, host interrupts on its CPU and "
              "its driver's notifies, and interrupts may come back to back)",
              {"guest_state": ("running", "halted", "outside", "returning", "busy")}, deterministic=False),
    EventSpec("virtio-notify", "the guest notifies a virtio queue by an MMIO write to its notify register "
              "(ioeventfd=on: KVM signals the backend's eventfd in the kernel; off: QEMU handles the MMIO)",
              {"ioeventfd": ("on", "off")}),
    EventSpec("interrupts-on", "the guest enables interrupts (sti) while an interrupt may be pending from its "
              "interrupts-off set-up: at most one interrupt-window exit", deterministic=False),
    EventSpec("timer", "guest arms its LAPIC timer (TMICT, or the TSC-deadline MSR) and the timer expires "
              "(lvtt_vector: the guest's LVTT vector, 0xef = the host's LOCAL_TIMER_VECTOR; direct: slave-v2's "
              "direct mode)",
              {"apic": APIC, "guest_state": ("halted", "running"), "mode": ("oneshot", "tsc-deadline"),
               "armed_with": ("interrupts-on", "interrupts-off"), "lvtt_vector": ("0xef", "other"),
               "direct": DIRECT}, deterministic=False),
    EventSpec("nmi", "a host NMI arrives on the pCPU while the guest runs"),
    EventSpec("page-fault", "first guest touch of a page not yet mapped in EPT/NPT"),
    EventSpec("eoi", "guest writes EOI for an interrupt it received (source=direct: one the slave series "
              "delivered without an exit; assigned-msi: an assigned device's MSI, direct where the profile "
              "delivers those directly; timer: the one-shot timer's, direct where the profile passes it through)",
              {"apic": APIC, "source": ("virtual", "direct", "assigned-msi", "timer"), "pv_eoi": ("off", "on")}),
    EventSpec("host-ipi", "the host sends a housekeeping IPI (TLB shootdown, call-function) to the vCPU's pCPU",
              {"kind": ("tlb", "call-function")}, deterministic=False),
    EventSpec("host-irq", "a host interrupt the host meant for itself (its timer tick, a stray IPI, a device IRQ "
              "not remapped) reaches the vCPU's pCPU while the guest is in guest mode",
              {"guest_state": STATE, "direct": DIRECT}, deterministic=False),
    EventSpec("signal", "a signal to the vCPU thread (QEMU's SIG_IPI, pause)", {"guest_state": STATE},
              deterministic=False),
)}


def event(name: str) -> EventSpec:
    if name not in EVENTS:
        raise unknown("event", name, EVENTS)
    return EVENTS[name]
