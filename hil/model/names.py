"""Abstract reasons and counters to the names each architecture's kernel uses (the kvm_exit
tracepoint's names: SVM_EXIT_REASONS / VMX_EXIT_REASONS, see reasons.py)."""
from __future__ import annotations

from hil.model.errors import ModelError

_REASONS: dict[str, dict[str, str]] = {
    "svm": {"EXTINT": "interrupt", "NMI": "nmi", "IRQ_WINDOW": "vintr", "CPUID": "cpuid", "HLT": "hlt",
            "IO": "io", "MSR_READ": "msr", "MSR_WRITE": "msr", "APIC_ACCESS": "npf", "EPT_VIOLATION": "npf",
            "EPT_MISCONFIG": "npf", "MWAIT": "mwait", "PAUSE": "pause",
            # AVIC: a trap after a write AVIC does not accelerate (TMICT, LVTT...), and an IPI to a vCPU
            # that is not running (svm/avic.c avic_unaccelerated_access/avic_incomplete_ipi_interception)
            "APIC_WRITE": "avic_unaccelerated_access", "AVIC_INCOMPLETE_IPI": "avic_incomplete_ipi",
            "PREEMPT": "nmi"},   # PREEMPT on SVM: the port's self-NMI held by GIF=0 (assumption prevent-run-exit)
    "vmx": {"EXTINT": "EXTERNAL_INTERRUPT", "NMI": "EXCEPTION_NMI", "IRQ_WINDOW": "INTERRUPT_WINDOW",
            "CPUID": "CPUID", "HLT": "HLT", "IO": "IO_INSTRUCTION", "MSR_READ": "MSR_READ",
            "MSR_WRITE": "MSR_WRITE", "APIC_ACCESS": "APIC_ACCESS", "EPT_VIOLATION": "EPT_VIOLATION",
            "EPT_MISCONFIG": "EPT_MISCONFIG", "MWAIT": "MWAIT_INSTRUCTION", "PAUSE": "PAUSE_INSTRUCTION",
            "APIC_WRITE": "APIC_WRITE",
            # both the prevent-run exit (v2/17, the port's 0004) and the hv timer's expiry are reason 52
            "PREEMPT": "PREEMPTION_TIMER", "HV_TIMER": "PREEMPTION_TIMER"},
}
# Linux 3.x debugfs names where they differ from today's binary stats.
_COUNTERS_2012 = {"irq_window_exits": "irq_window", "nmi_window_exits": "nmi_window",
                  "request_irq_exits": "request_irq"}


def reason(arch: str, abstract: str, era: str = "modern") -> str:
    if arch == "vmx" and era == "2012" and abstract == "IRQ_WINDOW":
        return "PENDING_INTERRUPT"
    table = _REASONS.get(arch)
    if table is None:
        raise ModelError(f"unknown architecture {arch!r}; valid: {', '.join(sorted(_REASONS))}")
    if abstract not in table:
        raise ModelError(f"abstract exit reason {abstract!r} does not exist on {arch}")
    return table[abstract]


def counter(name: str, era: str) -> str:
    return _COUNTERS_2012.get(name, name) if era == "2012" else name


# Exit reasons whose count is a KVM counter of its own (the rest only move 'exits').
COUNTED_EXITS = {"EXTINT": "irq_exits", "IO": "io_exits", "HLT": "halt_exits", "IRQ_WINDOW": "irq_window_exits"}
