"""Devices in L2 on the real nested stack: QEMU's edu device assigned through VFIO in L1,
and a virtio-net NIC on a tap in L1 (QEMU's backend and vhost-net). Every interrupt is
taken once, EOI'd with exactly one msr exit, and timed; every frame gets through in order;
what L1 set up for the run is gone after it."""
import json

import pytest

from reliability import run_hil

pytestmark = pytest.mark.lab

EDU_COUNTS = (23, 57)       # two unusual counts: the measurement must follow them


@pytest.fixture(scope="module")
def edu_runs(hil_lab):
    return {n: hil_lab.run("device-edu-msi", f"workload.ops.0.count={n}") for n in EDU_COUNTS}


def _passed(run):
    bad = [(c.name, c.verdict.value, c.detail) for c in run.result.cases if c.verdict.value != "PASS"]
    assert bad == [], bad


@pytest.mark.parametrize("n", EDU_COUNTS)
def test_edu_msi_one_eoi_exit_and_one_sample_per_interrupt(edu_runs, n):
    run = edu_runs[n]
    _passed(run)
    op = run.measurement.op("dev-msi")
    assert op.count == n and op.reported["irqs"] == n and op.reported["raised"] == n
    assert op.exits["msr"] == n                           # the x2APIC EOI write, once per interrupt
    assert len(op.samples["lat"]) == n
    lat = next(o for o in run.result.to_dict()["measurement"]["ops"] if o["op"] == "dev-msi")["latency"]["lat"]
    assert lat["n"] == n and 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert sum(b["count"] for b in lat["histogram"]) == n
    vfio = run.measurement.devices["vfio-pci"]
    assert vfio["host"]["host_irqs"]["total"] == n        # each MSI one vfio interrupt in L1
    assert vfio["teardown_errors"] == []


def test_edu_msi_counts_follow_the_request(edu_runs):
    a, b = (edu_runs[n].measurement.op("dev-msi") for n in EDU_COUNTS)
    assert a.exits["msr"] != b.exits["msr"]


def test_edu_dma_transfers_intact(hil_lab):
    run = hil_lab.run("device-edu-dma")
    _passed(run)
    op = run.measurement.op("dev-dma")
    assert op.reported["data_errors"] == 0 and op.reported["transfers"] == op.count


@pytest.mark.parametrize("scenario", [pytest.param("virtio-net-rx", marks=pytest.mark.deep), "virtio-net-rx-vhost"])
def test_net_rx_every_frame_in_order(hil_lab, scenario):
    run = hil_lab.run(scenario, "workload.ops.0.count=29")
    _passed(run)
    op = run.measurement.op("net-rx")
    assert (op.reported["frames"], op.reported["in_order"], op.reported["first_seq"]) == (29, 1, 0)
    assert op.exits.get("msr", 0) == op.reported["irqs"]     # one EOI per receive interrupt
    assert run.measurement.frames["frame-sender"]["sent"] == 29
    assert run.measurement.devices["virtio-net"]["teardown_errors"] == []


@pytest.mark.parametrize("scenario", ["virtio-net-tx", "virtio-net-tx-vhost"])
def test_net_tx_every_frame_on_the_tap(hil_lab, scenario):
    run = hil_lab.run(scenario, "workload.ops.0.count=31")
    _passed(run)
    assert run.measurement.frames["frame-counter"]["frames"] == 31
    assert run.measurement.frames["frame-counter"]["in_order"] == 31
    assert len(run.measurement.op("net-tx").samples["lat"]) == 31


# -- missing capabilities and a device that cannot be set up: never a verdict on the kernel --
def _cli(tmp_path, *sets: str):
    out = tmp_path / "out"
    args = [a for s in sets for a in ("--set", s)]
    proc = run_hil(None, "run", "device-edu-msi", "--accel", "tcg", "--out", str(out), *args)
    return proc, json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("append,code,verdict,says", [
    # the user's append comes last on L1's command line: intel_iommu=off wins over the device's =on
    ("intel_iommu=off", 3, "SKIP", ("no IOMMU groups", "intel_iommu=on")),
    # vfio-pci exists in L1's image but L1 refuses to load it: the device cannot be bound
    ("module_blacklist=vfio_pci", 2, "ERROR", ("insmod vfio-pci failed", "L1's kernel log ends")),
], ids=["no-iommu-is-skip-naming-the-fix", "refused-vfio-driver-is-error-with-l1s-log"])
@pytest.mark.deep    # fast tier: bind-failure unit tests
def test_a_device_l1_cannot_set_up_is_never_a_verdict(tmp_path, append, code, verdict, says):
    proc, result = _cli(tmp_path, f"topology.l1.append={append}")
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert result["verdict"] == verdict
    text = proc.stdout + proc.stderr
    assert all(s in text for s in says), text


# -- the same devices on the dedicated-cpu series (v2 mode): a kick is an NMI, the EOI still traps --
@pytest.mark.deep    # fast tier: the direct series' assigned edu
@pytest.mark.parametrize("scenario,op_name", [("device-edu-dma-dedicated", "dev-dma"),
                                              ("virtio-net-rx-dedicated", "net-rx"),
                                              ("virtio-net-tx-vhost-dedicated", "net-tx")])
def test_devices_on_the_dedicated_series(hil_lab, scenario, op_name):
    run = hil_lab.run(scenario)
    _passed(run)
    op = run.measurement.op(op_name)
    irqs = op.reported["irqs"]
    assert irqs >= 1 and op.exits.get("msr", 0) == irqs       # one trapped EOI per interrupt taken
    assert op.exits.get("nmi", 0) <= irqs                      # at most one NMI kick per interrupt
