"""A device that does not bind to vfio-pci is the lab failing (ERROR with L1's kernel log),
never a verdict on the kernel; a fake sysfs tree stands in for L1's."""
from pathlib import Path

import pytest

from hil.lab.devices import vfio_pci
from hil.lab.errors import LabError

BDF = "0000:00:04.0"


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    dev = tmp_path / "devices" / BDF
    dev.mkdir(parents=True)
    (dev / "driver_override").write_text("\n")
    probe = tmp_path / "drivers_probe"
    monkeypatch.setattr(vfio_pci, "PCI_DEVICES", tmp_path / "devices")
    monkeypatch.setattr(vfio_pci, "DRIVERS_PROBE", probe)
    monkeypatch.setattr(vfio_pci, "dmesg_tail", lambda: "L1's kernel log ends:\nvfio-pci: probe of 0000:00:04.0 failed with error -22")
    return dev, probe


def _bind_to(dev: Path, name: str) -> None:
    driver = dev.parent.parent / "drivers" / name
    driver.mkdir(parents=True, exist_ok=True)
    (driver / "unbind").write_text("")
    (dev / "driver").symlink_to(driver)


def test_a_probe_that_binds_nothing_is_an_error_with_l1s_log(sysfs):
    dev, probe = sysfs
    with pytest.raises(LabError) as e:
        vfio_pci.bind_vfio(BDF)
    assert f"{BDF} did not bind to vfio-pci" in str(e.value) and "probe of 0000:00:04.0 failed" in str(e.value)
    assert probe.read_text() == BDF and (dev / "driver_override").read_text() == "vfio-pci"


def test_a_device_another_driver_keeps_is_an_error(sysfs):
    dev, _ = sysfs
    _bind_to(dev, "edu")          # unbind is written but the (fake) driver stays: as a busy one would
    with pytest.raises(LabError, match="did not bind to vfio-pci"):
        vfio_pci.bind_vfio(BDF)
    assert (dev.parent.parent / "drivers" / "edu" / "unbind").read_text() == BDF


def test_a_bound_device_is_given_back_by_its_undo_step(sysfs):
    dev, _ = sysfs
    _bind_to(dev, "vfio-pci")
    undo = vfio_pci.bind_vfio(BDF)
    undo()
    assert (dev.parent.parent / "drivers" / "vfio-pci" / "unbind").read_text() == BDF
    assert (dev / "driver_override").read_text() == "\n"
