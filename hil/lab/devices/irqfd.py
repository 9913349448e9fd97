"""Host-side counts shared by the device kinds: MSIs KVM injected (irqfd, and KVM_SIGNAL_MSI)."""
from __future__ import annotations

from typing import Any

from hil.lab.kvm import tracing
from hil.lab.stimuli.base import Driver

# kvm_set_msi_irq traces every MSI route KVM delivers: an irqfd's (vfio, vhost, QEMU's
# ioeventfd-less paths use KVM_SIGNAL_MSI and show up too), keyed by the MSI's data (vector)
MSI_SET_IRQ = tracing.HistTrigger("kvm/kvm_msi_set_irq", ("data",))


class MsiInjections(Driver):
    def __init__(self) -> None:
        self.present = False
        self.entries: list[dict[str, int]] = []

    def before_start(self, vm: Any) -> None:
        self.present = (vm.trace.root / "events" / MSI_SET_IRQ.event).is_dir()
        if self.present:
            vm.trace.ensure(MSI_SET_IRQ)
            vm.trace.clear(MSI_SET_IRQ)

    def finish(self, vm: Any) -> None:
        if self.present:
            self.entries = vm.trace.read(MSI_SET_IRQ).entries

    def result(self) -> dict[str, Any]:
        return {"traced": self.present, "by_vector": {str(e["data"] & 0xFF): e["hitcount"] for e in self.entries},
                "total": sum(e["hitcount"] for e in self.entries)}


class Observers(Driver):
    """Several observers as one (each keyed by its class in the result)."""
    def __init__(self, parts: list[Driver]):
        self.parts = parts

    def before_start(self, vm: Any) -> None:
        for p in self.parts:
            p.before_start(vm)

    def on_serial(self, text: str, vm: Any) -> None:
        for p in self.parts:
            p.on_serial(text, vm)

    def finish(self, vm: Any) -> None:
        for p in self.parts:
            p.finish(vm)

    def result(self) -> dict[str, Any]:
        names = {"InterruptCounter": "host_irqs", "MsiInjections": "msi_injections", "VhostActivity": "vhost"}
        return {names.get(type(p).__name__, type(p).__name__): p.result() for p in self.parts}
