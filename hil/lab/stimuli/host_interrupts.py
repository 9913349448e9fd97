"""Host interrupts per kind and L1 CPU while each announced probe op ran: the tick, the
reschedule, call-function and irq_work IPIs, device IRQs, and KVM's own immediate-exit IPIs
by vCPU. They explain a vCPU's external-interrupt exits (a stock kick is a reschedule IPI).
Snapshots at the op's `begin` line and at its result line; the difference covers the op,
plus the guest's wait after `begin` and the report after it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from hil.lab.kvm import tracing
from hil.lab.stimuli.base import Driver, L2Handle, StimulusSpec

# a whole line only: the serial log is read while the guest writes it ("name=dev-" then "msi")
BEGIN = re.compile(r"hil-probe: event=begin name=(\S+)\r?\n")
KINDS = ("local_timer", "reschedule", "call_function", "call_function_single", "irq_work")
TRIGGERS = {kind: tracing.HistTrigger(f"irq_vectors/{kind}_entry", ("common_cpu",)) for kind in KINDS}
TRIGGERS["device_irq"] = tracing.HistTrigger("irq/irq_handler_entry", ("common_cpu",))

Snapshot = dict[str, dict[str, int]]


@dataclass(frozen=True)
class HostInterruptsPerOp(StimulusSpec):
    kind: ClassVar[str] = "host-interrupts"

    def driver(self) -> Driver:
        return _Observer()


class _Observer(Driver):
    def __init__(self) -> None:
        self.kinds: dict[str, tracing.HistTrigger] = {}
        self.begun: dict[str, tuple[Snapshot, Snapshot]] = {}
        self.per_op: dict[str, Snapshot] = {}
        self.immediate_per_op: dict[str, dict[str, int]] = {}
        self.immediate: tracing.HistTrigger | None = None

    def before_start(self, vm: L2Handle) -> None:
        present = [(k, t) for k, t in TRIGGERS.items() if (vm.trace.root / "events" / t.event).is_dir()]
        self.kinds = dict(present)
        # KVM's immediate exits: a reschedule IPI to its own CPU (kvm_entry's field, 5.x+)
        try:
            if "immediate_exit" in vm.trace.fields("kvm/kvm_entry"):
                self.immediate = tracing.IMMEDIATE_EXITS
        except OSError:
            pass
        for t in (*self.kinds.values(), *((self.immediate,) if self.immediate else ())):
            vm.trace.ensure(t)
            vm.trace.clear(t)

    def _snapshot(self, vm: L2Handle) -> tuple[Snapshot, Snapshot]:
        host = {k: {str(e["common_cpu"]): e["hitcount"] for e in vm.trace.read(t).entries}
                for k, t in self.kinds.items()}
        imm = ({"by_vcpu": {str(e["vcpu_id"]): e["hitcount"] for e in vm.trace.read(self.immediate).entries}}
               if self.immediate else {})
        return host, imm

    def on_serial(self, text: str, vm: L2Handle) -> None:
        for op in BEGIN.findall(text):
            if op not in self.begun:
                self.begun[op] = self._snapshot(vm)
        for op, (host0, imm0) in self.begun.items():
            if op not in self.per_op and re.search(rf"event=op name={re.escape(op)}\b", text):
                host1, imm1 = self._snapshot(vm)
                self.per_op[op] = {k: {c: n - host0.get(k, {}).get(c, 0) for c, n in cpus.items()}
                                   for k, cpus in host1.items()}
                by0 = imm0.get("by_vcpu", {})
                self.immediate_per_op[op] = {v: n - by0.get(v, 0) for v, n in imm1.get("by_vcpu", {}).items()}

    def result(self) -> dict[str, Any]:
        return {"per_op": self.per_op, "immediate_exits_per_op": self.immediate_per_op}
