"""What one occurrence of an event does under a profile on an architecture, in abstract exit
reasons. Each branch names its primary source (docs/model-sources.md has the quotes): the seed
(shared/seed/000_dd26aa0ae430ceeb.txt, "seed Lnn"), the v2 patches ("v2/nn", YuxinZ/VMCPUIsolate
@a4dab325), Linux 3.6 and Linux 6.12 KVM (file:function), the port (kernel_patches/dedicated-cpu)
and the lab's measurements. Every unverified premise is an assumption (assumptions.py) attached
to the cell that rests on it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hil.model.errors import ModelError
from hil.model.profiles import Profile
from hil.model.types import NOISE, ONE, ZERO, Bound

# Abstract reasons (names.py maps them per arch): EXTINT NMI IRQ_WINDOW CPUID HLT MWAIT PAUSE IO
# MSR_READ MSR_WRITE APIC_ACCESS APIC_WRITE AVIC_INCOMPLETE_IPI EPT_VIOLATION EPT_MISCONFIG
# HV_TIMER (the guest's LAPIC timer on the VMX preemption timer) PREEMPT (prevent-run, race.py only).
Q = dict[str, str]


@dataclass
class Effect:
    exits: dict[str, Bound] = field(default_factory=dict)
    counters: dict[str, Bound] = field(default_factory=dict)   # beyond those derived from exits
    guest_interrupts: Bound = ZERO
    bounces: Bound = ZERO
    delivered: bool = True
    misdelivered: Bound = ZERO
    handled_on: dict[str, str] = field(default_factory=dict)
    assumptions: tuple[str, ...] = ()

    def exit(self, reason: str, n: Bound = ONE, where: str = "dedicated") -> "Effect":
        self.exits[reason] = self.exits.get(reason, ZERO) + n
        self.handled_on.setdefault(reason, where)
        return self

    def count(self, counter: str, n: Bound = ONE) -> "Effect":
        self.counters[counter] = self.counters.get(counter, ZERO) + n
        return self

    def assume(self, *names: str) -> "Effect":
        self.assumptions += tuple(n for n in names if n not in self.assumptions)
        return self


def _in_guest(p: Profile, state: str) -> bool:
    """A halted vCPU stays in guest mode when its HLT does not exit; else its thread blocks."""
    return state == "running" or (state == "halted" and not p.hlt_exiting)


def _woken(p: Profile, e: Effect) -> None:
    """kvm_vcpu_kick -> kvm_vcpu_wake_up counts halt_wakeup (3.6 kvm_main.c kvm_vcpu_kick;
    6.12 kvm_main.c:3910); today a wake-up caught by halt polling counts halt_successful_poll."""
    e.count("halt_wakeup")
    if p.era == "modern":
        e.assume("halt-poll-miss")


def _hv_timer(p: Profile, arch: str) -> bool:
    """6.12 lapic.c kvm_can_use_hv_timer: VMX only (set_hv_timer), not with MWAIT in the guest."""
    return arch == "vmx" and p.era == "modern" and p.mwait_exiting


def _apic_write(p: Profile, arch: str, apic: str, e: Effect, virtualised: bool = False) -> None:
    """A guest write to a LAPIC register KVM emulates. No APIC virtualisation: x2APIC -> MSR
    write, xAPIC -> APIC page access (an NPF on SVM). APICv: EOI virtualised, ICR only with
    IPIv (6.12 vmx.c vmx_update_msr_bitmap_x2apic), other xAPIC writes trap as APIC_WRITE (56);
    AVIC: EOI and ICR accelerated, TMICT/LVTT trap as avic_unaccelerated_access (6.12 svm/avic.c
    is_avic_unaccelerated_access_trap)."""
    if not p.apicv:
        _trapped_write(apic, e)
        return
    if arch == "svm" and apic == "x2apic":
        e.assume("avic-is-x2avic")
    if virtualised:                             # EOI, and ICR with IPIv / AVIC
        e.assume("edge-triggered")
    elif arch == "svm" or apic == "xapic":
        e.exit("APIC_WRITE")
    else:
        e.exit("MSR_WRITE")


def _trapped_write(apic: str, e: Effect) -> None:
    """Without APIC virtualisation every emulated LAPIC write exits: an x2APIC MSR write, or an
    access to the xAPIC page (an NPF on SVM)."""
    e.exit("MSR_WRITE" if apic == "x2apic" else "APIC_ACCESS")


def _virtual_injection(p: Profile, e: Effect) -> None:
    """KVM injects at the next entry: irq_injections counts vmx_inject_irq/svm_inject_irq only
    (6.12 vmx.c:4984, svm.c:3815); APICv/AVIC deliver through RVI/the vAPIC page instead."""
    if not p.apicv:
        e.count("irq_injections")
    e.guest_interrupts = e.guest_interrupts + ONE
    e.assume("guest-if")


def _kick(p: Profile, state: str, e: Effect) -> None:
    """kvm_vcpu_kick: wake a blocked vCPU, else signal one in guest mode: a reschedule IPI
    (stock), an NMI (seed L135-139, v2/14, the port's 0003 kvm_dedicated_kick hook)."""
    if state == "outside":
        return
    if state in ("returning", "busy"):          # lab:virtio-tx-interrupt, lab:rx-busy: in guest mode or not
        e.exit("EXTINT", Bound(0, 1), where="host") if p.kick == "ipi" else e.exit("NMI", Bound(0, 1))
        return
    if not _in_guest(p, state):
        _woken(p, e)
    elif p.kick == "ipi":
        e.exit("EXTINT", where="host")
    else:
        e.exit("NMI")


def _deliver(p: Profile, state: str, e: Effect) -> None:
    """An interrupt for the vCPU from elsewhere: posted under APICv/AVIC (no exit for a vCPU in
    guest mode: 6.12 vmx.c kvm_vcpu_trigger_posted_interrupt), else a kick then an injection."""
    if p.apicv:
        if state == "halted" and p.hlt_exiting:
            _woken(p, e)
        e.guest_interrupts = e.guest_interrupts + ONE
        e.assume("guest-if")
    elif p.direct_msi and p.host_isolated and _in_guest(p, state):
        # dedicated-direct 0006: relayed to the vCPU's CPU as a physical IPI with the guest's vector
        e.guest_interrupts = e.guest_interrupts + ONE
        e.count("direct_relays").assume("direct-relay")
    else:
        _kick(p, state, e)
        _virtual_injection(p, e)


def _check_direct(p: Profile, q: Q) -> bool:
    """slave-v2's direct mode (v2/14 vmx_set_direct_interrupt): off from a virtual injection
    until apic_set_eoi. Only v2 toggles it; asking direct=off elsewhere is an error."""
    if q["direct"] == "off" and p.ext_int_exiting != "toggled":
        raise ModelError(f"direct=off: profile {p.name} has no direct mode to turn off "
                         "(only slave-v2 toggles external-interrupt exiting)")
    # dedicated-direct: the relay's interrupts go through the guest IDT (assumption direct-relay)
    return p.ext_int_exiting in ("off", "host-timer") or (p.ext_int_exiting == "toggled" and q["direct"] == "on")


def _cpuid(p: Profile, arch: str, q: Q, e: Effect) -> None:
    e.exit("CPUID")                             # VMX: unconditional; SVM: KVM always intercepts (lab: N -> N)


def _hlt(p: Profile, arch: str, q: Q, e: Effect) -> None:
    if p.hlt_exiting:                           # seed L38-39 (v1 11/18); port 0002/0004; KVM_CAP_X86_DISABLE_EXITS
        e.exit("HLT")


def _mwait(p: Profile, arch: str, q: Q, e: Effect) -> None:
    if p.mwait_exiting:                         # 6.12 vmx.c:4537, svm.c:1289 (kvm_mwait_in_guest)
        e.exit("MWAIT")


def _pause(p: Profile, arch: str, q: Q, e: Effect) -> None:
    if p.pause_exiting:                         # 6.12 vmx.c:4645, svm.c:1338 (kvm_pause_in_guest)
        e.exit("PAUSE").assume("ple-window")


def _pio_kernel(p: Profile, arch: str, q: Q, e: Effect) -> None:
    e.exit("IO")


def _userspace(p: Profile, e: Effect) -> None:
    e.count("userspace_exits").assume("userspace-exits-tracepoint")
    if p.bounce_to_online:                      # v2/06: EXIT_TO_USER returns to the online CPU
        e.bounces = ONE


def _pio_user(p: Profile, arch: str, q: Q, e: Effect) -> None:
    e.exit("IO", where="online" if p.bounce_to_online else "host")
    _userspace(p, e)


def _mmio_user(p: Profile, arch: str, q: Q, e: Effect) -> None:
    e.exit("EPT_MISCONFIG", where="online" if p.bounce_to_online else "host").count("mmio_exits")
    _userspace(p, e)


def _virtio_notify(p: Profile, arch: str, q: Q, e: Effect) -> None:
    """An MMIO write to a page with no memslot: an NPF (SVM) / EPT misconfig (VMX) exit.
    ioeventfd on: 6.12 x86.c vcpu_mmio_write -> kvm_io_bus_write -> eventfd.c ioeventfd_write
    signals the backend in the kernel, no userspace exit (lab:virtio-notify: N notifies, N npf,
    no io or userspace exit, QEMU's backend and vhost-net alike); off: QEMU's MMIO handler."""
    if q["ioeventfd"] == "off":
        _mmio_user(p, arch, q, e)
    else:
        e.exit("EPT_MISCONFIG")


def _interrupts_on(p: Profile, arch: str, q: Q, e: Effect) -> None:
    """The op's opening sti after set-up with interrupts off. KVM opens the interrupt window for
    an interrupt it cannot inject while IF=0 (6.12 svm.c svm_enable_irq_window: V_IRQ + VINTR
    intercept; vmx.c enable_irq_window) and closes it only at the window's exit, also when that
    interrupt has gone meanwhile: one exit once the sti's shadow ends (lab:sti-window: traced, the
    firmware's PIT IRQ0 pending at the PIC while the loader ran with IF=0, masked by the probe
    before its first sti: the exit injected nothing). dedicated-direct closes such a stale window
    at each direct entry (0011) and has no virtual interrupt pending at the sti of these ops: no
    exit. APICv/AVIC evaluate a pending interrupt at the sti themselves: no exit."""
    if p.closes_stale_window:
        e.assume("no-stale-window")
    elif not p.apicv:
        e.exit("IRQ_WINDOW", Bound(0, 1))


def _msr(p: Profile, arch: str, q: Q, e: Effect) -> None:
    msr, read = q["msr"], q["access"] == "read"
    plain = "MSR_READ" if read else "MSR_WRITE"
    if msr in ("x2apic-tmict", "x2apic-tmcct"):
        if p.timer_passthrough:                 # v2/20: 0x838/0x839 pass in the slave bitmap (direct mode)
            e.assume("v2-direct-mode")
            return
        if p.apicv and arch == "vmx":           # x2APIC+APICv: reads pass except TMCCT; writes trap
            if read and msr == "x2apic-tmict":
                return
        elif p.apicv:                           # x2AVIC: TMICT read from the backing page; else unaccelerated
            e.assume("avic-is-x2avic")
            if read and msr == "x2apic-tmict":
                return
            plain = "APIC_WRITE"
    elif msr == "cstate-residency":
        if not read:
            raise ModelError("msr=cstate-residency is read-only: use access=read")
        if arch == "vmx" and not p.cstate_exiting:
            return                              # 6.12 vmx.c:7582 passes MSR_CORE_C*_RES reads through
    e.exit(plain)                               # apic-base, tsc-deadline, other: intercepted everywhere


def _msi_assigned(p: Profile, arch: str, q: Q, e: Effect) -> None:
    direct = _check_direct(p, q)
    state = q["guest_state"]
    if p.direct_msi:                            # v1 17/18, v2/18: retargeted to the slave, guest vector
        e.assume("vcpu-resident")
        if direct:
            e.guest_interrupts = ONE            # through the guest IDT: no exit, no counter
            if p.irte_retarget:                 # dedicated-direct: the IOMMU sends it there (0010)
                e.assume("direct-retarget")
            elif p.ext_int_exiting == "host-timer":   # dedicated-direct without 0010: KVM's relay (0006)
                e.count("direct_relays").assume("direct-relay")
            elif p.ext_int_exiting == "toggled":
                e.assume("v2-direct-mode")
        else:                                   # v2/14: exiting back on; v2/09: interrupted -> LOOP_ONLINE
            e.exit("EXTINT", where="online")
            e.bounces = ONE
            _virtual_injection(p, e)            # host's remap table -> assigned-dev thread -> injection
        return
    if p.posted_interrupts:                     # VT-d PI / AVIC IOMMU: posted, no exit in guest mode
        if not _in_guest(p, state):
            _woken(p, e)
        e.guest_interrupts = ONE
        e.assume("guest-if")
        return
    if p.dedicated_cpu:                         # the seed: no routing (17/18 absent), the host's thread kicks by NMI
        _kick(p, state, e)
    elif _in_guest(p, state):
        if p.era == "2012":                     # 3.6 assigned-dev: threaded handler runs after re-entry
            e.exit("EXTINT", Bound(1, 2), where="host").assume("msi-host-affinity-2012")
        elif p.kick == "ipi":                   # irqfd in hardirq: exit where it lands, or the kick's IPI
            e.exit("EXTINT", where="host").assume("msi-host-affinity")
        else:                                   # the port: a kick from another CPU is an NMI (0003)
            e.exit("EXTINT", Bound(0, 1), where="host").exit("NMI", Bound(0, 1)).assume("msi-port-kick")
    else:
        _woken(p, e)
    _virtual_injection(p, e)


def _ipi(p: Profile, arch: str, q: Q, e: Effect) -> None:
    target, apic = q["target_state"], q["apic"]
    e.assume("ipi-both-vcpus")
    if p.apicv:
        _apic_write(p, arch, apic, e, p.ipiv)
        if not p.ipiv:
            e.assume("apicv-no-ipiv")
        if arch == "svm" and p.ipiv and not _in_guest(p, target):
            e.exit("AVIC_INCOMPLETE_IPI")       # AVIC_IPI_FAILURE_TARGET_NOT_RUNNING (6.12 svm/avic.c)
        _deliver(p, target, e)
        return
    _trapped_write(apic, e)
    _kick(p, target, e)
    _virtual_injection(p, e)
    if p.ext_int_exiting == "off":                  # only v1 keeps it off for good
        e.assume("v1-smp-guests")


def _kick_event(p: Profile, arch: str, q: Q, e: Effect) -> None:
    _kick(p, q["guest_state"], e)


def _interrupt_in(p: Profile, arch: str, q: Q, e: Effect) -> None:
    _deliver(p, q["guest_state"], e)
    if q["guest_state"] == "busy" and not p.apicv:
        # lab:rx-busy: one arriving while the handler of the previous runs (IF=0 until its iret)
        # is pending at the EOI exit's re-entry: KVM opens the window, at most one exit for it
        e.exit("IRQ_WINDOW", Bound(0, 1)).assume("back-to-back-interrupts")


def _timer(p: Profile, arch: str, q: Q, e: Effect) -> None:
    direct = _check_direct(p, q)
    state, apic = q["guest_state"], q["apic"]
    # dedicated-direct 0007 (K4): a one-shot x2APIC timer is the physical one for each direct
    # entry: TMICT passes, the expiry is the guest's vector through its IDT (no window to wait
    # for); a TSC-deadline or xAPIC timer stays KVM's (below)
    own = p.timer_passthrough and p.host_isolated
    if own and q["mode"] == "oneshot" and apic == "x2apic" and direct:
        e.guest_interrupts = ONE
        e.assume("direct-timer", "direct-timer-host-request")
        return
    if q["mode"] == "tsc-deadline":
        e.exit("MSR_WRITE")                     # intercepted in every profile (v2/20 mirrors it on the exit)
    elif own or not (p.timer_passthrough and apic == "x2apic" and direct):
        _apic_write(p, arch, apic, e)           # v2/19-20: TMICT passes only in the slave bitmap
    if p.timer_passthrough and not own:         # v2/20: the slave's physical LAPIC timer
        e.assume("v2-lvtt-vector")
        if q["lvtt_vector"] == "other":         # LVTT write refused (-EINVAL): never armed
            e.delivered = False
            return
        if direct:
            e.guest_interrupts = ONE            # vector 0xef through the guest IDT: no window to wait for
            e.assume("v2-direct-mode")
            return
        else:                                   # exit 1, slave_lapic_timer_fn -> kvm_timer_fn; v2/09 bounce
            e.exit("EXTINT", where="online")
            e.bounces = ONE
            _virtual_injection(p, e)
    elif p.ext_int_exiting == "off":            # seed L40-41: the hrtimer's host interrupt goes into the guest
        e.misdelivered = ONE
        e.delivered = False
        e.assume("v1-timer-misdelivered")
        return
    else:
        if _in_guest(p, state):
            # armed with interrupts off, a short timer on a slow host can expire while the vCPU is
            # still out for the TMICT write: no exit then, KVM injects at entry (measured on the
            # TCG lab under load: 4 timers, 1 interrupt exit and 3 irq-window exits)
            once = Bound(0, 1) if q["armed_with"] == "interrupts-off" else ONE
            if q["armed_with"] == "interrupts-off":
                e.assume("timer-may-expire-before-entry")
            if p.ext_int_exiting == "host-timer":       # dedicated-direct: which exit depends on the CPU
                e.exit("EXTINT", Bound(0, 1), where="host").exit("NMI", Bound(0, 1))
                e.assume("direct-timer-expiry")
            elif _hv_timer(p, arch):
                e.exit("HV_TIMER", once)        # 6.12 vmx.c handle_fastpath_preemption_timer
            else:
                e.exit("EXTINT", once, where="host")   # hrtimer on the vCPU's pCPU (3.6 timer.c, 6.12 lapic.c)
        elif p.era == "modern":                 # 6.12 apic_timer_expired -> kvm_vcpu_kick -> wake_up
            _woken(p, e)
        if arch == "vmx" and p.era == "modern":
            e.assume("hv-timer")
        _virtual_injection(p, e)
    if q["armed_with"] == "interrupts-off" and not p.apicv:
        # armed before sti: a slow host can let it expire first, and KVM then waits for the
        # interrupt window (one irq-window exit at the sti); APICv/AVIC deliver at sti unaided
        e.exit("IRQ_WINDOW", Bound(0, 1))


def _nmi(p: Profile, arch: str, q: Q, e: Effect) -> None:
    e.exit("NMI")                               # NMI exiting stays on everywhere (seed leaves it; v2/14 too)


def _page_fault(p: Profile, arch: str, q: Q, e: Effect) -> None:
    e.exit("EPT_VIOLATION", where="online" if p.bounce_to_online else "dedicated").count("pf_fixed")
    if p.bounce_to_online:                      # v2/07: recorded on the slave, resolved online
        e.bounces = ONE


def _eoi(p: Profile, arch: str, q: Q, e: Effect) -> None:
    source, apic = q["source"], q["apic"]
    if source == "assigned-msi":                # the EOI of the msi-assigned before it: direct where that was
        source = "direct" if p.direct_msi and p.ext_int_exiting != "on" else "virtual"
    elif source == "timer":                     # the EOI of the (one-shot) timer before it: likewise
        source = "direct" if p.timer_passthrough and p.ext_int_exiting != "on" else "virtual"
    direct = source == "direct"
    if direct and p.ext_int_exiting == "on":
        raise ModelError(f"eoi source=direct: profile {p.name} delivers no interrupt without an exit "
                         "(only the slave profiles do)")
    e.assume("edge-triggered")
    if q["pv_eoi"] == "on" and not direct:
        if p.pv_eoi:
            return                              # PV-EOI (3.6 ae7a2a3f): no exit when nothing else is pending
        e.assume("pv-eoi-refused")              # v2/14 refuses the MSR for a slave vCPU; v1's base predates it
    if direct and p.direct_eoi_x2apic and apic == "x2apic":
        # v2/19: 0x80b passes in the slave bitmap; dedicated-direct 0006: while no virtual vector is in service
        e.assume("direct-eoi" if p.ext_int_exiting == "host-timer" else "v2-direct-mode")
        return
    _apic_write(p, arch, apic, e, virtualised=True)
    if direct and not p.direct_eoi_x2apic:
        e.assume("v1-direct-eoi-absent")


def _host_ipi(p: Profile, arch: str, q: Q, e: Effect) -> None:
    if p.host_isolated:                         # direct:0005: an NMI doorbell, the work re-raised at the exit
        e.exit("NMI").assume("host-work-by-nmi")
    elif not p.dedicated_cpu:
        e.exit("EXTINT", where="host")
    elif q["kind"] == "call-function":
        e.delivered = False                     # a slave is not online: generic IPIs do not target it
    elif p.tlb_by_nmi:
        e.exit("NMI")                           # v2/21 (v1 18/18)
    else:                                       # the seed: a fixed-vector IPI into the guest IDT
        e.misdelivered = ONE
        e.delivered = False
        e.assume("misdelivery")


def _host_irq(p: Profile, arch: str, q: Q, e: Effect) -> None:
    direct = _check_direct(p, q)
    if direct:                                  # seed L12-16: exit on external interrupts is disabled
        e.misdelivered = ONE
        e.delivered = False
        e.assume("misdelivery")
        if p.ext_int_exiting == "toggled":
            e.assume("v2-direct-mode")
    elif p.dedicated_cpu:                       # v2, direct mode off: exit 1, interrupted -> online (v2/09)
        e.exit("EXTINT", where="online")
        e.bounces = ONE
    elif _in_guest(p, q["guest_state"]):
        e.exit("EXTINT", where="host")
    # a blocked vCPU's thread is off the CPU: the host takes its interrupt with no exit


def _signal(p: Profile, arch: str, q: Q, e: Effect) -> None:
    state = q["guest_state"]
    if p.bounce_to_online:                      # v2/06: the online thread's wait breaks -> kvm_vcpu_kick
        _kick(p, state, e)
    elif _in_guest(p, state):                   # signal_wake_up -> kick_process: a reschedule IPI
        e.exit("EXTINT", where="host")
        if p.kick != "ipi":
            e.assume("signal-kick-process")
    # a blocked thread is woken by signal_wake_up itself: no halt_wakeup (that is kvm_vcpu_wake_up's)
    e.count("signal_exits")
    _userspace(p, e)


SEMANTICS: dict[str, Callable[[Profile, str, Q, Effect], None]] = {
    "cpuid": _cpuid, "hlt": _hlt, "mwait": _mwait, "pause-spin": _pause, "pio-kernel": _pio_kernel,
    "pio-user": _pio_user, "mmio-user": _mmio_user, "msr": _msr, "msi-assigned": _msi_assigned, "ipi": _ipi,
    "kick": _kick_event, "interrupt-in": _interrupt_in, "timer": _timer, "nmi": _nmi,
    "page-fault": _page_fault, "eoi": _eoi, "host-ipi": _host_ipi, "host-irq": _host_irq, "signal": _signal,
    "virtio-notify": _virtio_notify, "interrupts-on": _interrupts_on,
}


def effect(p: Profile, arch: str, event: str, q: Q) -> Effect:
    e = Effect()
    SEMANTICS[event](p, arch, q, e)
    return e


def ambient(p: Profile) -> Effect:
    """Exits nobody asked for: host interrupts on a pCPU the host still uses. A pCPU the host
    does no work on (a slave; an isolated CPU whose host IPIs go by NMI) bounds them to 0, and
    the answer names the assumption that does it."""
    e = Effect().assume("one-vcpu-per-pcpu", *p.assumptions)
    if p.dedicated_cpu:
        e.assume("slave-cpu-quiet")
    elif p.host_isolated:
        e.assume("isolated-cpu-quiet")
    else:
        e.exit("EXTINT", NOISE, where="host")
        e.assume("ambient-host-interrupts")
    return e
