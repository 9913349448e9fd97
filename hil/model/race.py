"""The kick race as a discrete-event model: the vCPU's entry path as ordered steps, a kick
landing between any two of them, and what each profile makes of it.

Entry path (vcpu_enter_guest, both series and today's KVM):
  0 OUTSIDE_GUEST_MODE, preparing
  1 mode := IN_GUEST_MODE (interrupts off)
  2 check requests (kvm_vcpu_exit_request) -- a request already set aborts the entry here
  3 last instructions before VMRESUME/VMRUN (the window the seed leaves open)
  4 in guest
  5 EXITING_GUEST_MODE: an earlier kick is taking the vCPU out
  6 in guest with EXITING_GUEST_MODE: an earlier kick was lost in step 3, so its cmpxchg left
    the mode at EXITING while the vCPU entered anyway; it stays so until an unrelated exit
A kick sets the request, then signals the vCPU if cmpxchg(mode: IN_GUEST_MODE -> EXITING)
succeeds (v2 also signals when it finds EXITING_GUEST_MODE). The signal is a reschedule
IPI (stock: masked until entry, then an immediate external-interrupt exit) or an NMI
(slave series: taken at once, even with interrupts off; v1's handler does nothing; v2's sets
prevent_run, making the entry exit at once, reason PREEMPT; on the slave series that exit also
sends the vCPU back to the online CPU: v2/17 kvm_arch_vcpu_run_prevented sets `interrupted`).
Step 6 is why the seed's loss is sticky: its kick signals only a vCPU it finds IN_GUEST_MODE,
so after one lost kick every later kick is lost too until something else makes the vCPU exit
(measured on the dedicated-cpu port: kernel_patches/dedicated-cpu, qemu_configs kick-race-v1).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from hil.model.errors import ModelError
from hil.model.profiles import Profile
from hil.model.types import Bound

STEPS = ("outside", "mode-set", "request-checked", "entering", "in-guest", "exiting", "in-guest-stuck")
# vcpu->mode at each step: the state machine kvm_vcpu_kick's cmpxchg reads.
STEP_WINDOW = STEPS.index("entering")    # past the request check, VMRUN ahead
STEP_IN_GUEST = STEPS.index("in-guest")
MODE = {"outside": "OUTSIDE_GUEST_MODE", "mode-set": "IN_GUEST_MODE", "request-checked": "IN_GUEST_MODE",
        "entering": "IN_GUEST_MODE", "in-guest": "IN_GUEST_MODE", "exiting": "EXITING_GUEST_MODE",
        "in-guest-stuck": "EXITING_GUEST_MODE"}


def signals(p: Profile, step: int) -> bool:
    """Whether the kick sends an IPI/NMI at all: stock and v1 only from IN_GUEST_MODE (the
    cmpxchg to EXITING must succeed); v2 also when it finds EXITING_GUEST_MODE."""
    mode = MODE[STEPS[step]]
    if p.kick == "nmi-unless-outside":
        return mode != "OUTSIDE_GUEST_MODE"
    return mode == "IN_GUEST_MODE"


@dataclass(frozen=True)
class KickOutcome:
    lands_at: str
    seen: bool                  # the request is acted on
    exit_reason: str | None     # abstract reason of the exit it causes, if any
    delay_steps: int | None     # steps until it is acted on (None: lost until an unrelated exit)
    bounce: bool = False        # its exit returns the vCPU to the online CPU (slave series)
    assumptions: tuple[str, ...] = ()


def kick_at(p: Profile, step: int, later_exits: bool | None = None) -> KickOutcome:
    """One interleaving: the kick's request and signal land just before `step` runs.
    later_exits: whether some unrelated exit will come. By default it will when HLT or
    external interrupts exit, or when EOIs trap (no direct EOI: every interrupt the guest takes
    exits at its EOI, as in v1, seed L109-112); then seen=True with delay_steps None means
    "delayed until that exit", not lost."""
    at = STEPS[step]
    if step <= 2:            # the request check still lies ahead: the entry is abandoned, no exit
        return KickOutcome(at, True, None, 0)
    if STEPS[step] == "exiting":   # an earlier kick is already taking the vCPU out: seen on the way
        return KickOutcome(at, True, None, 0)
    unrelated = later_exits if later_exits is not None else (
        p.hlt_exiting or p.ext_int_exiting == "on" or not p.direct_eoi_x2apic)
    if STEPS[step] == "in-guest-stuck":   # only v2's kick signals a vCPU it finds EXITING
        if signals(p, step):
            return KickOutcome(at, True, "NMI", 1)
        return KickOutcome(at, unrelated, None, None)
    if p.kick == "ipi":      # stock: the IPI stays pending with interrupts off, exits right after entry
        return KickOutcome(at, True, "EXTINT", 1)
    if step == 4:            # slave series, in guest: NMI exit
        return KickOutcome(at, True, "NMI", 1)
    if p.prevent_run:        # v2/17: the NMI handler arms an immediate exit of the coming entry
        return KickOutcome(at, True, "PREEMPT", 1, p.bounce_to_online, ("prevent-run-exit",))
    # The seed: the NMI was taken in the host and acted on nothing; the request waits.
    return KickOutcome(at, unrelated, None, None)


def enumerate_kicks(p: Profile) -> list[KickOutcome]:
    """Every step a kick can land at (the stuck step only exists after a lost kick)."""
    return [kick_at(p, s) for s in range(len(STEPS))]


@dataclass
class RaceStats:
    kicks: int
    lost: int
    exits: dict[str, int]
    events: int
    window: int = 0             # kicks that landed in the window (step 3)
    stuck: int = 0              # kicks that found the vCPU in step 6


def simulate(p: Profile, kicks: int, seed: int = 0, entry_steps: int = 4, guest_ticks: int = 20,
             rescue_every: int | None = None) -> RaceStats:
    """Many kicks at random times against a vCPU that keeps re-entering: each cycle is
    `entry_steps` time units on the entry path (one per step before in-guest) and `guest_ticks`
    in the guest. The vCPU exits only for the kicks it sees, and every `rescue_every` time
    units (at 0, r, 2r, ...) for an unrelated reason. A lost kick leaves it in step 6 until the
    next exit. events counts the kicks and the rescues."""
    if entry_steps != STEP_IN_GUEST:
        raise ModelError(f"entry_steps is one time unit per entry step: {STEP_IN_GUEST}, got {entry_steps}")
    rng = random.Random(seed)
    cycle = entry_steps + guest_ticks
    horizon = kicks * cycle
    times = sorted(rng.random() * horizon for _ in range(kicks))
    rescues = int(horizon // rescue_every) + 1 if rescue_every else 0
    stuck_step = STEPS.index("in-guest-stuck")
    lost = window = stuck_kicks = 0
    stuck_at: float | None = None          # the time of the loss that left the vCPU stuck
    exits: dict[str, int] = {}
    for t in times:
        if stuck_at is not None and rescue_every and t // rescue_every > stuck_at // rescue_every:
            stuck_at = None                # a rescue exit came in between
        phase = int(t) % cycle
        step = stuck_step if stuck_at is not None else min(phase, STEP_IN_GUEST)
        window += step == STEP_WINDOW
        stuck_kicks += step == stuck_step
        out = kick_at(p, step, later_exits=False)
        if not out.seen:
            lost += 1
            stuck_at = t
        elif out.exit_reason:
            stuck_at = None
        if out.exit_reason:
            exits[out.exit_reason] = exits.get(out.exit_reason, 0) + 1
    return RaceStats(kicks, lost, exits, kicks + rescues, window, stuck_kicks)


@dataclass(frozen=True)
class KickLandings:
    """What the lab saw of one kick op: the numbers the model's bounds depend on."""
    sent: int                    # kicks sent
    taken: int                   # interrupts the guest's handler took (each ends in one EOI)
    late: int                    # kicks the guest took late (not within the op's timeout)
    window: int                  # kick NMIs that landed past the request check, VMRUN ahead
    window_pending: int          # of them, whose request this entry had not taken yet
    found_exiting_no_nmi: int    # kicks that found the vCPU at EXITING and sent no NMI
    guest_nmis_all_vcpus: int    # kick NMIs that landed in the guest, every vCPU
    unrelated_exits: int         # the op's exits that could deliver a lost kick's interrupt
    host_interrupts: int | None  # host interrupts on vCPU 0's CPU while the op ran (None: unknown)
    io_thread: bool = False      # the kicks are MSIs from QEMU's I/O thread (else another vCPU's IPIs)
    relayed: int = 0             # direct delivery: kicks relayed as physical IPIs (kvm_dedicated_relay)
    forwarded: int = 0           # of them, taken by the host in root mode and injected virtually
    deferred: int = 0            # exits that re-raised host work sent to the CPU by NMI (a doorbell)
    if_windows: bool = False     # the guest holds IF=0 in windows while the kicks come (op cli-window)


@dataclass(frozen=True)
class KickCheck:
    name: str                    # what is measured: accepted, eoi_exits, late, taken, ...
    label: str                   # the model's reading of it
    bound: Bound


@dataclass(frozen=True)
class KickBounds:
    checks: tuple[KickCheck, ...]
    # the landing the stress must have produced to say anything (None: any run tells):
    # v2's prevent-run at work (window), v1's kick really lost (window_pending)
    evidence: str | None = None


def _direct_bounds(k: KickLandings) -> KickBounds:
    """Direct delivery (dedicated-direct): a kick that finds vCPU 0 in the guest is relayed to its
    CPU as a physical IPI with the guest's vector and taken through the guest's IDT: no kick, no
    exit, and its EOI passes through (no virtual vector in service). The I/O-thread MSIs of a
    spinning guest all find it in the guest; another vCPU's IPIs may find it out, and those go
    the v2 way (a virtual interrupt, its EOI trapped). A relayed vector that reaches the CPU in
    root mode (the relay raced an exit: forwarded) is raised again as a physical self-IPI at the
    next direct entry (0008), so it too is taken directly; only a host request's exit can make
    the vCPU leave the guest while an I/O-thread MSI is relayed to it."""
    host_requests = k.guest_nmis_all_vcpus + k.deferred
    checks = [KickCheck("accepted", "kicks accepted by vCPU 0's APIC", Bound.exactly(k.sent)),
              KickCheck("relays", "kicks relayed as physical IPIs with the guest's vector",
                        Bound.exactly(k.sent) if k.io_thread else Bound(0, k.sent)),
              KickCheck("eoi_exits", "EOI exits (none for an interrupt taken directly)",
                        Bound.exactly(max(0, k.taken - k.relayed))),
              KickCheck("late", "late kicks", Bound.exactly(0)),
              KickCheck("taken", "interrupts taken", Bound.exactly(k.sent)),
              KickCheck("stock_kicks", "kicks of vCPU 0 by reschedule IPI (whole run)", Bound.exactly(0)),
              # no NMI per interrupt: each NMI exit is a traced kick or self-NMI landing in the guest,
              # or a host request that came to the CPU by NMI (re-raised at that exit)
              KickCheck("nmi_exits_all", "NMI exits, whole run (each a kick, self or host-request NMI)",
                        Bound(0, host_requests))]
    if k.io_thread:
        checks += [KickCheck("forwards", "relayed MSIs the host took in root mode (the guest spins in it: "
                             "at most one per host request's exit)", Bound(0, host_requests)),
                   KickCheck("ext_int_exits", "external-interrupt exits", Bound.exactly(0))]
    return KickBounds(tuple(checks))


def _if_window_checks(p: Profile, k: KickLandings) -> list[KickCheck]:
    """The guest holds IF=0 in windows (op cli-window). IF gates maskable interrupts on every
    profile: KVM injects a virtual interrupt only when IF is set and no shadow is in force
    (6.1:intr-blocked), and direct delivery (dedicated-direct 0006) clears V_INTR_MASKING with
    the INTR intercept, so the guest's IF, not the host's, gates the physical interrupt in guest
    mode (the rule KVM itself applies to a nested guest's V_INTR_MASKING in the same function;
    lab:cli-window measures it under TCG's SVM). None is taken in a window.
    One that arrived in a window waits for its sti: a virtual one makes KVM open the window (one
    irq-window exit after the sti's shadow; none when the kick's own exit came after the sti);
    APICv/AVIC evaluate it at the sti; a relayed one waits in the CPU's IRR: no exit."""
    if not k.if_windows:
        return []
    if p.apicv:
        window = Bound.exactly(0)
    elif p.direct_msi:
        window = Bound(0, max(0, k.taken - k.relayed))     # only interrupts injected the v2 way
    else:
        window = Bound(0, k.taken)
    return [KickCheck("taken_masked", "interrupts taken with IF=0 (inside cli .. the sti's shadow)",
                      Bound.exactly(0)),
            KickCheck("window_exits", "interrupt-window exits (at most one per interrupt injected virtually)",
                      window)]


def kick_bounds(p: Profile, k: KickLandings) -> KickBounds:
    """The model's bounds for a kick op, given where the kicks landed: kick_at per step,
    summed over the landings the tracepoints counted."""
    bounds = _kick_bounds(p, k)
    return KickBounds(bounds.checks + tuple(_if_window_checks(p, k)), bounds.evidence)


def _kick_bounds(p: Profile, k: KickLandings) -> KickBounds:
    checks = [KickCheck("accepted", "kicks accepted by vCPU 0's APIC", Bound.exactly(k.sent)),
              KickCheck("eoi_exits", "EOI exits (the handler's, one per interrupt taken)", Bound.exactly(k.taken))]
    if p.direct_msi:
        return _direct_bounds(k)
    if p.kick == "ipi":
        # stock: a reschedule IPI per kick found in guest mode, an external-interrupt exit; none is lost.
        # Another vCPU's IPI may land while vCPU 0 is already out (no exit needed).
        return KickBounds(tuple(checks + [
            KickCheck("late", "late kicks", Bound.exactly(0)),
            KickCheck("taken", "interrupts taken", Bound.exactly(k.sent)),
            KickCheck("ext_int_exits", "external-interrupt exits",
                      Bound(k.sent, None) if k.io_thread else Bound(0, None)),
        ]))
    in_guest, in_window = kick_at(p, STEP_IN_GUEST), kick_at(p, STEP_WINDOW, later_exits=False)
    # an NMI taken in the guest is one exit; in the window v2's prevent-run adds one (its self-NMI)
    exits_per_nmi = 1 if in_guest.exit_reason == "NMI" else 0
    self_per_window = 1 if in_window.exit_reason == "PREEMPT" else 0
    # v1: a kick lost in the window leaves vcpu->mode at EXITING, and the seed's kick does not
    # signal a vCPU it finds EXITING: those kicks (step in-guest-stuck) are lost as well
    stuck = kick_at(p, STEPS.index("in-guest-stuck"), later_exits=False)
    # a window landing whose request this entry had already taken is late news, not a loss
    lost_low = 0 if in_window.seen else k.window_pending
    lost_high = lost_low + (0 if stuck.seen else k.found_exiting_no_nmi)
    checks += [
        # the tracepoint hists span the whole L2 run: every kick counts, not only the op's
        KickCheck("nmi_exits_all", "NMI exits, whole run, all vCPUs (one per NMI taken in the guest)",
                  Bound.exactly(exits_per_nmi * k.guest_nmis_all_vcpus)),
        KickCheck("prevent_run_nmis", "prevent-run NMIs (one per kick landing in the window)",
                  Bound.exactly(self_per_window * k.window)),
        # a lost kick shows as late unless an unrelated exit delivered it first
        KickCheck("late", "late kicks (lost: landed in the window, or found the vCPU stuck at EXITING)",
                  Bound(max(0, lost_low - k.unrelated_exits), lost_high)),
        KickCheck("taken", "interrupts taken", Bound(max(0, k.sent - k.late), k.sent)),
        # a kick is an NMI: the stock path (a reschedule IPI to a vCPU in guest mode) never runs
        KickCheck("stock_kicks", "kicks of vCPU 0 by reschedule IPI (whole run)", Bound.exactly(0)),
    ]
    if k.host_interrupts is not None:
        # none from kicks; each external-interrupt exit has a host interrupt of its own on that CPU
        checks.append(KickCheck("ext_int_exits", "external-interrupt exits (none from kicks; at most "
                                "the host interrupts on that CPU)", Bound(0, k.host_interrupts)))
    evidence = None if k.io_thread else ("window" if p.prevent_run else "window_pending")
    return KickBounds(tuple(checks), evidence)
