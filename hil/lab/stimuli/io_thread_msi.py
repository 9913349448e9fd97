"""MSIs from QEMU's I/O thread, as an emulated device raises them: hil makes QEMU's main
thread issue KVM_SIGNAL_MSI (python-ptrace), `count` of them `interval_s` apart, once the
guest announces the op that takes them. Needs nothing of the topology; the guest must have
a handler on `data`'s vector."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from hil.lab.stimuli.base import Driver, L2Handle, StimulusSpec

MSI_ADDRESS_APIC0 = 0xFEE00000   # fixed delivery, physical destination APIC ID 0


@dataclass(frozen=True)
class IoThreadMsi(StimulusSpec):
    kind: ClassVar[str] = "io-thread-msi"
    after: str               # regex on L2's serial output that starts the MSIs
    count: int
    interval_s: float
    start_delay_s: float     # the guest starts the op this long after announcing it
    address: int = MSI_ADDRESS_APIC0
    data: int = 0x50         # fixed delivery: the vector

    def driver(self) -> Driver:
        return _Sender(self)


class _Sender(Driver):
    def __init__(self, spec: IoThreadMsi):
        self.spec = spec
        self.after = re.compile(spec.after)
        self.results: list[int] | None = None

    def on_serial(self, text: str, vm: L2Handle) -> None:
        if self.results is not None or not self.after.search(text):
            return
        from hil.lab.kvm.inject import signal_msi   # python-ptrace only when used
        self.results = []
        for i in range(self.spec.count):
            time.sleep(self.spec.interval_s if i else self.spec.start_delay_s)
            self.results.append(signal_msi(vm.pid, self.spec.address, self.spec.data))

    def result(self) -> dict[str, Any]:
        return {"msi_results": self.results or []}
