"""An emulated PCI device assigned to L2 through VFIO (model edu: QEMU's educational device,
PCI 1234:11e8, docs/specs/edu.rst).

L0 gives L1 the device behind an emulated Intel IOMMU with interrupt remapping (VFIO needs
an IOMMU group; x2APIC L1 needs remapping), L1 boots with intel_iommu=on, the agent loads
the vfio modules, finds the device by vendor:device in sysfs, binds it to vfio-pci
(driver_override + drivers_probe) and L2's QEMU gets `-device vfio-pci,host=BDF`. The
device's MSIs then arrive in L1 as a vfio IRQ and reach L2 through an irqfd.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hil.lab.devices.base import Attached, DeviceSpec, InterruptCounter, dmesg_tail, load_modules
from hil.lab.devices.irqfd import MsiInjections, Observers
from hil.lab.errors import CapabilityMissing, LabError

# model -> (QEMU device, PCI vendor:device)
MODELS = {"edu": ("edu", "1234:11e8")}
PCI_DEVICES = Path("/sys/bus/pci/devices")
DRIVERS_PROBE = Path("/sys/bus/pci/drivers_probe")
FIX = "rebuild the L1 image (hil/lab/assets/l1_image.py MODULE_GROUPS['vfio'])"


@dataclass(frozen=True)
class VfioPci(DeviceSpec):
    kind: ClassVar[str] = "vfio-pci"
    model: str = "edu"

    def l0_machine_options(self) -> list[str]:
        return ["kernel-irqchip=split"]       # interrupt remapping needs the split irqchip under KVM

    def l0_argv(self) -> list[str]:
        return ["-device", "intel-iommu,intremap=on,eim=on,caching-mode=on", "-device", MODELS[self.model][0]]

    def l1_append(self) -> list[str]:
        return ["intel_iommu=on"]

    def module_group(self) -> str | None:
        return "vfio"

    def l1_snapshot_safe(self) -> bool:
        # QEMU's edu has no migration state: restored, its PCI config space (BAR, memory
        # decode) is blank while L1 believes it assigned, and L2 reads all-ones ("bad
        # identification", seen in this lab). L1 boots instead.
        return False

    def attach(self, run_dir: Path) -> Attached:
        if self.model not in MODELS:
            raise LabError(f"unknown vfio-pci model {self.model!r} (known: {', '.join(MODELS)})")
        if not Path("/sys/kernel/iommu_groups").is_dir() or not any(Path("/sys/kernel/iommu_groups").iterdir()):
            raise CapabilityMissing("L1 has no IOMMU groups: VFIO needs L0's intel-iommu and L1's intel_iommu=on "
                                    f"(L1 command line: {Path('/proc/cmdline').read_text().strip()})")
        load_modules("vfio", FIX)
        bdf = find_device(MODELS[self.model][1])
        att = Attached(["-device", f"vfio-pci,host={bdf}"], {"bdf": bdf, "model": self.model},
                       Observers([InterruptCounter("vfio"), MsiInjections()]))
        try:
            att.undo.append(bind_vfio(bdf))
            group = (PCI_DEVICES / bdf / "iommu_group").resolve().name
            att.info["iommu_group"] = group
            if not Path(f"/dev/vfio/{group}").exists():
                raise LabError(f"{bdf} is bound to vfio-pci but /dev/vfio/{group} does not exist\n{dmesg_tail()}")
        except BaseException:
            att.teardown()                  # a half-done set-up is undone here: the run never gets it
            raise
        return att


def find_device(vendor_device: str) -> str:
    vendor, device = (f"0x{x}" for x in vendor_device.split(":"))
    for d in sorted(PCI_DEVICES.iterdir()) if PCI_DEVICES.is_dir() else []:
        if (d / "vendor").read_text().strip() == vendor and (d / "device").read_text().strip() == device:
            return d.name
    raise CapabilityMissing(f"no PCI device {vendor_device} in L1: L0 did not attach it")


def bind_vfio(bdf: str) -> Any:
    """Bind bdf to vfio-pci; returns the step that gives it back to no driver."""
    dev = PCI_DEVICES / bdf
    driver = dev / "driver"
    if driver.exists() and driver.resolve().name != "vfio-pci":
        (driver / "unbind").write_text(bdf)
    (dev / "driver_override").write_text("vfio-pci")
    if not driver.exists():
        try:
            DRIVERS_PROBE.write_text(bdf)
        except OSError as e:
            raise LabError(f"binding {bdf} to vfio-pci failed: {e}\n{dmesg_tail()}") from e
    if not driver.exists() or driver.resolve().name != "vfio-pci":
        raise LabError(f"{bdf} did not bind to vfio-pci\n{dmesg_tail()}")

    def unbind() -> None:
        if driver.exists():
            (driver / "unbind").write_text(bdf)
        (dev / "driver_override").write_text("\n")
    return unbind
