"""Interrupt sources hil drives from outside the guest while L2 runs, and the host-side
counts taken around them: one module each.

Each source says what it needs from the topology, how L0 asks for it (a typed spec that
travels in the agent request), how the agent in L1 sets it up and triggers it (a driver
whose hooks the L2 run calls: before the guest starts, on every look at its serial output,
and at the end) and what it hands back. Sources the guest makes itself need no driver: the
probe's own timer (op hlt) and vCPU 1's IPIs (op ipi-race) are its code; their host-side
counts come from the observers here. Devices given to L2 (an assigned PCI device, a NIC on
a tap) live in hil/lab/devices/.

This package is shipped into L1 with the agent: standard library only at import time.
"""
from hil.lab.stimuli.base import Driver, StimulusSpec, spec_from_json
from hil.lab.stimuli.host_interrupts import HostInterruptsPerOp
from hil.lab.stimuli.io_thread_msi import IoThreadMsi
from hil.lab.stimuli.net_frames import FrameCounter, FrameSender

__all__ = ["Driver", "FrameCounter", "FrameSender", "HostInterruptsPerOp", "IoThreadMsi", "StimulusSpec",
           "spec_from_json"]
