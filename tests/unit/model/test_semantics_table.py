"""Every (profile, event) cell of the semantics table in shared/research/slave-cpu-series.md
§4, plus today's SVM/VMX and KVM_CAP_X86_DISABLE_EXITS rows (§7), as a table of
(profile, arch, event, params, expected exits per occurrence, extra checks, source)."""
import pytest

from hil.model import PROFILES, Bound, predict_event

INF = None
S4 = "slave-cpu-series.md §4"
# expected exits: reason -> int (exact) or (low, high); reasons not listed must be absent
# (except the profile's ambient host-interrupt noise, checked separately).
ROWS = [
    # ---- CPUID: intercepted in every profile
    ("stock-2012", "vmx", "cpuid", {}, {"CPUID": 1}, {}, "VMX CPUID exiting is unconditional (SDM); §4"),
    ("slave-v1", "vmx", "cpuid", {}, {"CPUID": 1}, {"bounces": 0}, S4 + " 2.2: CPUID handled on the slave"),
    ("slave-v2", "vmx", "cpuid", {}, {"CPUID": 1}, {"bounces": 0}, S4 + " 2.2"),
    ("stock-svm", "svm", "cpuid", {}, {"cpuid": 1}, {}, "measured in the lab: N CPUIDs, N cpuid exits"),
    # ---- HLT
    ("stock-2012", "vmx", "hlt", {}, {"HLT": 1}, {"halt_exits": 1}, S4 + " 'HLT in guest' (a): exit 12, halt_exits++"),
    ("slave-v1", "vmx", "hlt", {}, {}, {"halt_exits": 0}, S4 + " 'HLT in guest' (b): v1 11/18 clears HLT exiting"),
    ("slave-v2", "vmx", "hlt", {}, {}, {"halt_exits": 0}, S4 + " 'HLT in guest' (b): v2 11/21"),
    ("stock-svm", "svm", "hlt", {}, {"hlt": 1}, {"halt_exits": 1}, "nested-svm-probe.md Q3: 20 HLTs, 20 hlt exits"),
    ("disable-exits", "svm", "hlt", {}, {}, {"halt_exits": 0}, "§7 DISABLE_EXITS_HLT; nested-svm-probe.md Q3: 0 HLT exits"),
    ("disable-exits-hlt", "vmx", "hlt", {}, {}, {}, "§7 KVM_CAP_X86_DISABLE_EXITS HLT(1<<1)"),
    # ---- port I/O and MMIO
    ("stock-2012", "vmx", "pio-kernel", {}, {"IO_INSTRUCTION": 1}, {"io_exits": 1}, S4 + " 'I/O port / MMIO' (a)"),
    ("stock-2012", "vmx", "pio-user", {}, {"IO_INSTRUCTION": 1}, {"userspace_exits": 1}, S4 + " (a): KVM_EXIT_IO"),
    ("slave-v2", "vmx", "pio-kernel", {}, {"IO_INSTRUCTION": 1}, {"bounces": 0}, S4 + " (b): in-kernel device stays on slave"),
    ("slave-v2", "vmx", "pio-user", {}, {"IO_INSTRUCTION": 1}, {"bounces": 1}, S4 + " (b): userspace device -> online CPU"),
    ("slave-v1", "vmx", "mmio-user", {}, {"EPT_MISCONFIG": 1}, {"bounces": 1, "mmio_exits": 1}, S4 + " (b)"),
    ("stock-svm", "svm", "pio-user", {}, {"io": 1}, {"io_exits": 1}, "lab: kvm_pio on port 0x1234"),
    # ---- MSR
    ("stock-vmx", "vmx", "msr", {"access": "read"}, {"MSR_READ": 1}, {}, "IA32_APIC_BASE is always intercepted"),
    ("stock-svm", "svm", "msr", {"access": "write"}, {"msr": 1}, {}, "SVM reports reads and writes as 'msr'"),
    # ---- assigned-device MSI
    ("stock-2012", "vmx", "msi-assigned", {"guest_state": "running"}, {"EXTERNAL_INTERRUPT": (1, 2)},
     {"irq_injections": 1, "guest_interrupts": 1}, S4 + " 'Assigned-device MSI' (a): exit 1, kick, injection"),
    ("stock-2012", "vmx", "msi-assigned", {"guest_state": "halted"}, {}, {"halt_wakeup": 1}, S4 + " (a): wake if halted"),
    ("slave-v1", "vmx", "msi-assigned", {}, {}, {"guest_interrupts": 1, "irq_injections": 0}, S4 + " (b): no exit, no counter"),
    ("slave-v2", "vmx", "msi-assigned", {"guest_state": "halted"}, {}, {"guest_interrupts": 1}, S4 + " (b): wakes the halted slave"),
    ("stock-vmx-apicv", "vmx", "msi-assigned", {}, {}, {"guest_interrupts": 1}, "§7 VT-d posted interrupts"),
    # ---- guest IPI
    ("stock-2012", "vmx", "ipi", {"apic": "x2apic"}, {"MSR_WRITE": 1, "EXTERNAL_INTERRUPT": 1}, {}, S4 + " 'Guest IPI' (a)"),
    ("stock-2012", "vmx", "ipi", {"apic": "xapic", "target_state": "halted"}, {"APIC_ACCESS": 1}, {"halt_wakeup": 1}, S4 + " (a)"),
    ("slave-v2", "vmx", "ipi", {"apic": "x2apic"}, {"MSR_WRITE": 1, "EXCEPTION_NMI": 1}, {}, S4 + " 'Guest IPI' (b): NMI kick"),
    ("slave-v2", "vmx", "ipi", {"target_state": "halted"}, {"MSR_WRITE": 1, "EXCEPTION_NMI": 1}, {},
     S4 + " (b): HLT not exiting, the NMI wakes it via exit 0"),
    # ---- kick
    ("stock-2012", "vmx", "kick", {"guest_state": "running"}, {"EXTERNAL_INTERRUPT": 1}, {}, S4 + " 'Kick' (a): reschedule IPI"),
    ("stock-2012", "vmx", "kick", {"guest_state": "halted"}, {}, {"halt_wakeup": 1}, S4 + " 'Kick' (a): wake"),
    ("slave-v1", "vmx", "kick", {"guest_state": "running"}, {"EXCEPTION_NMI": 1}, {}, S4 + " 'Kick' (b): NMI, exit 0"),
    ("slave-v2", "vmx", "kick", {"guest_state": "outside"}, {}, {}, S4 + " (b): no NMI when OUTSIDE_GUEST_MODE"),
    ("disable-exits", "svm", "kick", {"guest_state": "halted"}, {"interrupt": 1}, {}, "§7: halted in guest mode, IPI exits"),
    ("stock-svm", "svm", "kick", {"guest_state": "running"}, {"interrupt": 1}, {}, "SVM INTR intercept"),
    # ---- timer
    ("stock-2012", "vmx", "timer", {"apic": "x2apic", "guest_state": "running"}, {"MSR_WRITE": 1, "EXTERNAL_INTERRUPT": 1},
     {"irq_injections": 1}, S4 + " 'Timer' (a): program exit, expiry exit 1, injection"),
    ("stock-2012", "vmx", "timer", {"apic": "xapic"}, {"APIC_ACCESS": 1}, {"halt_wakeup": 1}, S4 + " (a): xAPIC, halted"),
    ("stock-svm", "svm", "timer", {"apic": "x2apic", "armed_with": "interrupts-off"},
     {"msr": 1, "vintr": (0, 1)}, {"halt_wakeup": 1}, "armed before sti: it may expire first, then an irq window"),
    ("stock-vmx", "vmx", "timer", {"mode": "tsc-deadline", "guest_state": "running"}, {"MSR_WRITE": 1, "EXTERNAL_INTERRUPT": 1},
     {}, S4 + " (a): TSC-deadline MSR write exits"),
    ("slave-v2", "vmx", "timer", {"apic": "x2apic"}, {}, {"guest_interrupts": 1, "irq_injections": 0},
     S4 + " (b) v2/20: TMICT passthrough, direct expiry"),
    ("slave-v2", "vmx", "timer", {"apic": "xapic"}, {"APIC_ACCESS": 1}, {}, S4 + " (b): LVTT/xAPIC writes still exit"),
    ("slave-v1", "vmx", "timer", {"apic": "x2apic"}, {"MSR_WRITE": 1, "EXTERNAL_INTERRUPT": (0, 1)}, {},
     S4 + " (b) v1: open question, assumption v1-timer-expiry"),
    ("stock-svm", "svm", "timer", {"apic": "x2apic"}, {"msr": 1}, {"halt_wakeup": 1}, "lab: probe hlt op, 2 msr per op"),
    ("disable-exits-hlt", "svm", "timer", {"apic": "x2apic"}, {"msr": 1, "interrupt": 1}, {},
     "nested-svm-probe.md Q3: one INTR exit per wake-up"),
    # ---- NMI
    ("stock-2012", "vmx", "nmi", {}, {"EXCEPTION_NMI": 1}, {}, S4 + " 'NMI' (a): exit 0"),
    ("slave-v2", "vmx", "nmi", {}, {"EXCEPTION_NMI": 1}, {}, S4 + " 'NMI' (b): same hardware path"),
    # ---- page fault
    ("stock-2012", "vmx", "page-fault", {}, {"EPT_VIOLATION": 1}, {"pf_fixed": 1, "bounces": 0}, S4 + " 'EPT violation' (a)"),
    ("slave-v1", "vmx", "page-fault", {}, {"EPT_VIOLATION": 1}, {"bounces": 1}, S4 + " (b): resolved on the online CPU"),
    ("slave-v2", "vmx", "page-fault", {}, {"EPT_VIOLATION": 1}, {"bounces": 1, "pf_fixed": 1}, S4 + " (b) v2/07"),
    ("stock-svm", "svm", "page-fault", {}, {"npf": 1}, {}, "SVM NPF"),
    # ---- EOI
    ("stock-2012", "vmx", "eoi", {"apic": "xapic"}, {"APIC_ACCESS": 1}, {}, S4 + " 'Guest EOI' (a): exit 44"),
    ("stock-2012", "vmx", "eoi", {"apic": "x2apic"}, {"MSR_WRITE": 1}, {}, S4 + " (a): exit 32"),
    ("stock-2012", "vmx", "eoi", {"pv_eoi": "on"}, {}, {}, S4 + " (a): PV-EOI drops the EOI exit"),
    ("slave-v2", "vmx", "eoi", {"apic": "x2apic", "source": "direct"}, {}, {}, S4 + " (b) v2/19: direct EOI"),
    ("slave-v2", "vmx", "eoi", {"apic": "xapic", "source": "direct"}, {"APIC_ACCESS": 1}, {}, S4 + " (b): xAPIC EOI traps"),
    ("slave-v2", "vmx", "eoi", {"apic": "x2apic", "source": "virtual"}, {"MSR_WRITE": 1}, {}, S4 + " (b): traps while virtual IRQ in service"),
    ("slave-v1", "vmx", "eoi", {"apic": "x2apic", "source": "direct"}, {"MSR_WRITE": 1}, {}, S4 + " v1: no direct EOI"),
    ("stock-vmx-apicv", "vmx", "eoi", {"apic": "x2apic"}, {}, {}, "§7 APICv virtual EOI"),
    # ---- host IPIs
    ("stock-2012", "vmx", "host-ipi", {}, {"EXTERNAL_INTERRUPT": 1}, {}, S4 + " 'Host housekeeping IPIs' (a)"),
    ("slave-v2", "vmx", "host-ipi", {"kind": "tlb"}, {"EXCEPTION_NMI": 1}, {}, S4 + " (b): TLB shootdown by NMI (21/21)"),
    ("slave-v2", "vmx", "host-ipi", {"kind": "call-function"}, {}, {"delivered": False}, S4 + " (b): slave not online"),
    # ---- signals
    ("stock-2012", "vmx", "signal", {}, {"EXTERNAL_INTERRUPT": 1}, {"signal_exits": 1}, S4 + " 'Signal' (a): kick, KVM_EXIT_INTR"),
    ("slave-v2", "vmx", "signal", {}, {"EXCEPTION_NMI": 1}, {"signal_exits": 1, "bounces": 1}, S4 + " 'Signal' (b)"),
]
AMBIENT = {"interrupt", "EXTERNAL_INTERRUPT"}


@pytest.mark.parametrize("profile,arch,event,params,exits,extra,source", ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}-{i}" for i, r in enumerate(ROWS)])
def test_cell(profile, arch, event, params, exits, extra, source):
    n = 7
    pred = predict_event(profile, arch, event, n, **params)
    for reason, want in exits.items():
        lo, hi = (want, want) if isinstance(want, int) else want
        got = pred.exits.get(reason)
        assert got is not None, f"{reason} missing ({source})"
        assert got.low == lo * n, (reason, got, source)
        # On a CPU the host shares, host interrupts add unbounded noise to the same reason.
        if not (reason in AMBIENT and not PROFILES[profile].dedicated_cpu):
            assert got.high == hi * n, (reason, got, source)
    for reason, b in pred.exits.items():
        if reason not in exits:
            assert reason in AMBIENT and b.low == 0 and b.high is None, (reason, b, source)
    for key, want in extra.items():
        if key in ("bounces", "guest_interrupts"):
            assert getattr(pred, key) == Bound.exactly(want * n), (key, source)
        elif key == "delivered":
            assert pred.delivered is want, source
        else:
            assert pred.counters.get(key, Bound(0, 0)).low == want * n, (key, pred.counters, source)


def test_table_covers_every_section4_event_for_both_eras():
    events = {"msi-assigned", "ipi", "kick", "timer", "hlt", "nmi", "page-fault", "pio-kernel", "pio-user", "eoi",
              "host-ipi", "signal"}
    for profile in ("stock-2012", "slave-v2"):
        assert events <= {r[2] for r in ROWS if r[0] == profile}, profile
    assert {"stock-svm", "disable-exits", "disable-exits-hlt", "slave-v1"} <= {r[0] for r in ROWS}
