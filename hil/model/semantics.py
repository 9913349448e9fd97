"""What one occurrence of an event does under a profile, in abstract exit reasons.
Sources: shared/research/slave-cpu-series.md §4 (table rows named in each branch) and §7;
the lab's own measurements for SVM (nested-svm-probe.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

from hil.model.profiles import Profile
from hil.model.types import NOISE, ONE, ZERO, Bound

# Abstract reasons: EXTINT NMI IRQ_WINDOW CPUID HLT IO MSR_READ MSR_WRITE APIC_ACCESS
# EPT_VIOLATION EPT_MISCONFIG PREEMPT (see names.py for each arch's tracepoint name).


@dataclass
class Effect:
    exits: dict[str, Bound] = field(default_factory=dict)
    counters: dict[str, Bound] = field(default_factory=dict)   # beyond those derived from exits
    guest_interrupts: Bound = ZERO
    bounces: Bound = ZERO
    delivered: bool = True
    handled_on: dict[str, str] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()

    def exit(self, reason: str, n: Bound = ONE, where: str = "dedicated") -> "Effect":
        self.exits[reason] = self.exits.get(reason, ZERO) + n
        self.handled_on.setdefault(reason, where)
        return self

    def count(self, counter: str, n: Bound = ONE) -> "Effect":
        self.counters[counter] = self.counters.get(counter, ZERO) + n
        return self


def _apic_write(p: Profile, apic: str, e: Effect, register: str) -> None:
    """A guest write to a LAPIC register KVM emulates: x2APIC -> MSR write, xAPIC -> APIC page
    access (§4 'Timer', 'Guest IPI' rows; SVM without AVIC takes an NPF on the APIC page)."""
    if p.apicv and register in ("eoi",):
        return                                  # APICv/AVIC virtualise EOI (§7 APICv row)
    e.exit("MSR_WRITE" if apic == "x2apic" else "APIC_ACCESS")


def _virtual_injection(p: Profile, e: Effect, guest_if: bool = True) -> None:
    e.count("irq_injections")
    e.guest_interrupts = e.guest_interrupts + ONE
    if not guest_if:
        e.exit("IRQ_WINDOW")


def _kick(p: Profile, state: str, e: Effect) -> None:
    """kvm_vcpu_kick (§4 'Kick' row): a reschedule IPI (stock) or an NMI (slave series) to a
    vCPU in guest mode; a vCPU blocked in halt is woken instead."""
    in_guest = state == "running" or (state == "halted" and not p.hlt_exiting)
    if state == "outside" or not in_guest:
        if state == "halted":
            e.count("halt_wakeup")
        return
    if p.kick == "ipi":
        e.exit("EXTINT", where="host")
    else:
        e.exit("NMI")


def effect(p: Profile, event: str, q: dict[str, str]) -> Effect:
    e = Effect()
    if event == "cpuid":                        # every profile intercepts CPUID
        e.exit("CPUID")
    elif event == "hlt":                        # §4 'HLT in guest'
        if p.hlt_exiting:
            e.exit("HLT")                        # halt_exits follows from the exit (names.COUNTED_EXITS)
    elif event == "pio-kernel":                 # §4 'I/O port / MMIO', in-kernel device
        e.exit("IO")
    elif event == "pio-user":                   # userspace device: bounces on the slave series
        e.exit("IO", where="online" if p.bounce_to_online else "host").count("userspace_exits")
        if p.bounce_to_online:
            e.bounces = ONE
    elif event == "mmio-user":
        e.exit("EPT_MISCONFIG", where="online" if p.bounce_to_online else "host")
        e.count("mmio_exits").count("userspace_exits")
        if p.bounce_to_online:
            e.bounces = ONE
    elif event == "msr":
        e.exit("MSR_READ" if q["access"] == "read" else "MSR_WRITE")
    elif event == "msi-assigned":               # §4 'Assigned-device MSI'
        if p.direct_msi and p.ext_int_exiting != "on":
            e.guest_interrupts = ONE            # straight through the guest IDT: no exit, no counter
            if not p.dedicated_cpu:             # a relay, not the slave series' retargeted MSI
                e.assumptions += ("direct-relay",)
        elif p.posted_interrupts:
            e.guest_interrupts = ONE            # VT-d PI / AVIC: posted, no exit when running
            if q["guest_state"] == "halted":
                e.count("halt_wakeup")
        else:
            running = q["guest_state"] == "running" or not p.hlt_exiting
            if running:
                e.exit("EXTINT", Bound(1, 2), where="host")
                e.assumptions += ("msi-host-affinity",)
            else:
                e.count("halt_wakeup")
            _virtual_injection(p, e)
    elif event == "ipi":                        # §4 'Guest IPI'
        if not p.apicv:
            _apic_write(p, q["apic"], e, "icr")
        _kick(p, q["target_state"], e)
        _virtual_injection(p, e)
        if p.kick != "ipi" and not p.prevent_run:
            e.assumptions += ("v1-smp-guests",)
    elif event == "kick":
        _kick(p, q["guest_state"], e)
    elif event == "interrupt-in":
        _kick(p, q["guest_state"], e)
        _virtual_injection(p, e)
    elif event == "timer":                      # §4 'Timer'
        if q["mode"] == "tsc-deadline":
            e.exit("MSR_WRITE")                 # TSC-deadline MSR write exits in every profile
        elif not (p.timer_passthrough and q["apic"] == "x2apic"):
            _apic_write(p, q["apic"], e, "tmict")
        if p.timer_passthrough:
            e.guest_interrupts = ONE            # expiry through the guest IDT (v2/20)
        elif p.dedicated_cpu:
            e.exit("EXTINT", Bound(0, 1))       # v1: open question
            e.assumptions += ("v1-timer-expiry",)
            _virtual_injection(p, e)
        else:
            in_guest = q["guest_state"] == "running" or not p.hlt_exiting
            if in_guest and p.direct_msi:       # dedicated-direct: one exit, which one depends on the CPU
                e.exit("EXTINT", Bound(0, 1), where="host")
                e.exit("NMI", Bound(0, 1))
                e.assumptions += ("direct-timer-expiry",)
            elif in_guest:                      # hrtimer fires on the vCPU's pCPU
                e.exit("EXTINT", where="host")
            else:
                e.count("halt_wakeup")
            _virtual_injection(p, e)
        if q["armed_with"] == "interrupts-off" and not p.timer_passthrough:
            # armed before sti: a slow host can let it expire first, and KVM then waits for the
            # interrupt window (one irq-window exit at the sti)
            e.exit("IRQ_WINDOW", Bound(0, 1))
    elif event == "nmi":                        # §4 'NMI': NMI exiting stays on everywhere
        e.exit("NMI")
    elif event == "page-fault":                 # §4 'EPT violation'
        e.exit("EPT_VIOLATION", where="online" if p.bounce_to_online else "dedicated").count("pf_fixed")
        if p.bounce_to_online:
            e.bounces = ONE
    elif event == "eoi":                        # §4 'Guest EOI'
        direct = q["source"] == "direct"
        if q["pv_eoi"] == "on" and p.pv_eoi and not direct:
            pass                                # PV-EOI: no exit when no further IRQ is pending
        elif direct and p.direct_eoi_x2apic and q["apic"] == "x2apic":
            pass                                # v2/19: x2APIC EOI straight to the physical APIC
        else:
            _apic_write(p, q["apic"], e, "eoi")
            if not p.direct_eoi_x2apic and p.dedicated_cpu:
                e.assumptions += ("v1-direct-eoi-absent",)
    elif event == "host-ipi":                   # §4 'Host housekeeping IPIs'
        if not p.dedicated_cpu:
            e.exit("EXTINT", where="host")
        elif q["kind"] == "tlb" and p.tlb_by_nmi:
            e.exit("NMI")
        else:
            e.delivered = False                 # a slave CPU is not online: generic IPIs do not target it
    elif event == "signal":                     # §4 'Signal to vCPU thread'
        _kick(p, q["guest_state"], e)
        e.count("signal_exits").count("userspace_exits")
        if p.bounce_to_online:
            e.bounces = ONE
    return e


def ambient(p: Profile) -> Effect:
    """Exits nobody asked for: host interrupts on a pCPU the host still uses."""
    e = Effect()
    if not p.dedicated_cpu:
        e.exit("EXTINT", NOISE, where="host")
        e.assumptions += ("ambient-host-interrupts",)
    return e
