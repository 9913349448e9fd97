"""The probe's operations, once: the schema, the loader's rules, the payload build, the
prediction, the lab's request and the verdict all read this table. Adding an op is one
entry here plus its guest code (guest/window.S section, probe.c dispatch, probe.lds slice).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: how many iterations one op may run in one L2 run (the probe's own limit is 1e9)
MAX_COUNT = 10_000_000

#: a model event with the parameters that matter, executed once per iteration of an op
ModelStep = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class ProbeOpSpec:
    name: str                          # the op's spelling on the probe command line and in YAML
    doc: str
    events: tuple[ModelStep, ...]      # model events per iteration (the probe's code decides which)
    # how the verdict judges it: "exits" compares the op's exits per reason with the model's
    # prediction; "kicks" holds the kick-race bounds (hil.model.race) against where kicks landed
    judge: Literal["exits", "kicks"] = "exits"
    # an interrupt source outside the guest that hil drives while the op runs (hil/lab/stimuli:
    # io-thread-msi, frame-sender, frame-counter), or None when the guest makes everything itself
    stimulus: str | None = None
    min_vcpus: int = 1                 # L2 vCPUs the op needs (a second one sends IPIs)
    device: str | None = None          # the PCI device L2 must have: edu | virtio-net
    max_count: int = MAX_COUNT
    # integer fields of the probe's `event=op` line besides count and tsc
    results: tuple[str, ...] = ()
    # what each model event repeats for, where not each iteration: event -> the result field
    # counting it ("irqs": net-rx's NIC may coalesce frames into one interrupt; "notifies": the
    # device may ask not to be notified). The verdict predicts them from the probe's own counts
    # and checks the frames on their own.
    per: tuple[tuple[str, str], ...] = ()
    # model events once per op run: the device ops open with sti after an interrupts-off set-up
    once: tuple[ModelStep, ...] = ()
    # the HostCosts this op measures when hil calibrates (hil/model/latency.py): its per-iteration
    # cycles are that cost plus what the model already prices on its path
    calibrates: tuple[str, ...] = ()
    # the model events between the two TSC stamps of each latency sample ("lat": request ->
    # handler entry), for ops whose latency the model predicts; empty: not predicted
    latency_path: tuple[ModelStep, ...] = ()
    # why an op with latency samples has no predicted latency (the verdict says so)
    latency_unpriced: str = ""

    @property
    def symbol(self) -> str:
        """The op's name in the probe ELF (__op_<symbol>_start/_end)."""
        return self.name.replace("-", "_")


_X2APIC = (("apic", "x2apic"),)
# the handler takes each interrupt with interrupts on and writes the x2APIC EOI
_TAKE_AND_EOI: tuple[ModelStep, ...] = (("interrupt-in", (("guest_state", "running"),)), ("eoi", _X2APIC))
# an assigned device's MSI and its EOI: a direct EOI where the profile delivers the MSI directly
_ASSIGNED_MSI: tuple[ModelStep, ...] = (("msi-assigned", (("guest_state", "running"),)),
                                        ("eoi", (("apic", "x2apic"), ("source", "assigned-msi"))))
# the device ops' loops open with sti after set-up with interrupts off (guest/devices.c)
_STI: tuple[ModelStep, ...] = (("interrupts-on", ()),)

PROBE_OPS: dict[str, ProbeOpSpec] = {s.name: s for s in (
    ProbeOpSpec("cpuid", "CPUID leaf 0", (("cpuid", ()),), calibrates=("exit_entry",)),
    ProbeOpSpec("pio-kernel", "in from port 0x4d0 (the in-kernel PIC's ELCR)", (("pio-kernel", ()),)),
    ProbeOpSpec("pio-user", "out to port 0x1234 (QEMU userspace)", (("pio-user", ()),), calibrates=("userspace",)),
    ProbeOpSpec("msr", "rdmsr IA32_APIC_BASE", (("msr", (("access", "read"), ("msr", "apic-base"))),)),
    # arm the x2APIC one-shot timer (TMICT write) with interrupts off, sti; hlt; the handler EOIs
    ProbeOpSpec("hlt", "HLT woken by the guest's x2APIC one-shot timer",
                (("timer", (("apic", "x2apic"), ("armed_with", "interrupts-off"))), ("hlt", ()),
                 ("eoi", (("apic", "x2apic"), ("source", "timer")))),
                results=("hlts", "timer_us"), calibrates=("halt_wakeup",)),
    ProbeOpSpec("kicks", "spin with interrupts on while hil sends MSIs from QEMU's I/O thread",
                _TAKE_AND_EOI, judge="kicks", stimulus="io-thread-msi", max_count=100_000,
                results=("irqs", "sent", "late")),
    # windows of IF=0 (cli; spin; sti; nops) while hil sends MSIs: none may be taken inside a window,
    # each that arrived in one waits for its sti (guest/window.S op_cli_window)
    ProbeOpSpec("cli-window", "hold IF=0 in windows (a quarter of the MSI interval each) while hil sends MSIs "
                "from QEMU's I/O thread; the handler tells where it interrupted",
                (("interrupt-in", (("guest_state", "running"),)), ("interrupts-on", ()), ("eoi", _X2APIC)),
                judge="kicks", stimulus="io-thread-msi", max_count=100_000,
                results=("irqs", "masked", "at_sti", "windows", "masked_rip")),
    ProbeOpSpec("ipi-race", "vCPU 1 kicks vCPU 0 with IPIs in pairs aimed at its EOI exit and re-entry",
                _TAKE_AND_EOI, judge="kicks", min_vcpus=2,
                results=("irqs", "sent", "late", "lat_avg_ns", "lat_max_ns", "eoi_exit_ns", "icr_exit_ns")),
    # device ops (guest/devices.c): the guest drives a PCI device and takes its MSIs; each
    # prints its per-interrupt latency samples (event=samples lines)
    ProbeOpSpec("dev-msi", "the edu device raises an MSI (register 0x60) N times, one at a time; the handler acks",
                _ASSIGNED_MSI, device="edu", max_count=100_000, results=("irqs", "raised"), once=_STI,
                # timed: the raise (an MMIO write L0 emulates at once) -> handler entry; the EOI is after
                latency_path=(("msi-assigned", (("guest_state", "running"),)),), calibrates=("ipi", "nmi")),
    ProbeOpSpec("dev-dma", "edu DMA transfers, each completion an MSI from a QEMU timer",
                _ASSIGNED_MSI, device="edu", max_count=1_000, results=("irqs", "transfers", "data_errors"),
                once=_STI,
                latency_unpriced="the edu device completes a DMA from a 100 ms QEMU timer of L0's virtual "
                                 "clock: no mechanism cost of the lab's"),
    ProbeOpSpec("net-rx", "receive N frames the host sends into L2's virtio-net NIC (split virtqueue, MSI-X)",
                (("interrupt-in", (("guest_state", "busy"),)), ("eoi", _X2APIC)), device="virtio-net",
                stimulus="frame-sender", max_count=100_000, per=(("interrupt-in", "irqs"), ("eoi", "irqs")), once=_STI,
                results=("irqs", "frames", "in_order", "first_seq", "other", "notifies"),
                latency_unpriced="no request to time from: the host sends the frames at its own pace"),
    ProbeOpSpec("net-tx", "send N frames through L2's virtio-net NIC, one at a time",
                # the notify (ioeventfd: an MMIO exit, no userspace exit), the backend's TX
                # interrupt racing the vCPU's way back in, its EOI
                (("virtio-notify", (("ioeventfd", "on"),)), ("interrupt-in", (("guest_state", "returning"),)),
                 ("eoi", _X2APIC)),
                device="virtio-net", stimulus="frame-counter", max_count=100_000, results=("irqs", "frames", "notifies"),
                per=(("virtio-notify", "notifies"), ("interrupt-in", "irqs"), ("eoi", "irqs")), once=_STI,
                latency_unpriced="the path waits for QEMU's or vhost's backend thread in L1 to be scheduled, "
                                 "which the cost model has no term for (p50 varied 40x between runs)"),
)}


def spec(name: str) -> ProbeOpSpec:
    return PROBE_OPS[name]
