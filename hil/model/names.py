"""Abstract reasons and counters to the names each architecture's kernel uses."""
from __future__ import annotations

_REASONS: dict[str, dict[str, str]] = {
    "svm": {"EXTINT": "interrupt", "NMI": "nmi", "IRQ_WINDOW": "vintr", "CPUID": "cpuid", "HLT": "hlt",
            "IO": "io", "MSR_READ": "msr", "MSR_WRITE": "msr", "APIC_ACCESS": "npf", "EPT_VIOLATION": "npf",
            "EPT_MISCONFIG": "npf", "PREEMPT": "nmi"},   # PREEMPT on SVM: assumption svm-prevent-run-exit
    "vmx": {"EXTINT": "EXTERNAL_INTERRUPT", "NMI": "EXCEPTION_NMI", "IRQ_WINDOW": "INTERRUPT_WINDOW",
            "CPUID": "CPUID", "HLT": "HLT", "IO": "IO_INSTRUCTION", "MSR_READ": "MSR_READ",
            "MSR_WRITE": "MSR_WRITE", "APIC_ACCESS": "APIC_ACCESS", "EPT_VIOLATION": "EPT_VIOLATION",
            "EPT_MISCONFIG": "EPT_MISCONFIG", "PREEMPT": "PREEMPTION_TIMER"},
}
# Linux 3.x debugfs names where they differ from today's binary stats.
_COUNTERS_2012 = {"irq_window_exits": "irq_window", "nmi_window_exits": "nmi_window",
                  "request_irq_exits": "request_irq"}


def reason(arch: str, abstract: str, era: str = "modern") -> str:
    if arch == "vmx" and era == "2012" and abstract == "IRQ_WINDOW":
        return "PENDING_INTERRUPT"
    return _REASONS[arch][abstract]


def counter(name: str, era: str) -> str:
    return _COUNTERS_2012.get(name, name) if era == "2012" else name


# Exit reasons whose count is a KVM counter of its own (the rest only move 'exits').
COUNTED_EXITS = {"EXTINT": "irq_exits", "IO": "io_exits", "HLT": "halt_exits", "IRQ_WINDOW": "irq_window_exits"}
