"""Devices given to L2, one module per kind: what each needs of L0 (QEMU arguments, L1's
kernel command line), how L1's agent sets it up and tears it down (modules, binding, taps),
the arguments L2's QEMU gets, and the host-side counts taken around the run.

Shipped into L1 with the agent: standard library only at import time (pyroute2, shipped in
the image, only inside the agent's set-up code).
"""
from hil.lab.devices.base import Attached, DeviceSpec, device_from_json
from hil.lab.devices.vfio_pci import VfioPci
from hil.lab.devices.virtio_net import VirtioNet

__all__ = ["Attached", "DeviceSpec", "VfioPci", "VirtioNet", "device_from_json"]
