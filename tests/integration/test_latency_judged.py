"""Latency judged on the real nested stack: `hil calibrate` measures this lab's own costs (an
exit round trip, a userspace exit, a halt wake-up, an edu MSI's delivery) and writes the host
profile; a device scenario's latency is then predicted from it and its p50 and p99 judged;
a run with calibration ops of its own uses its own figures; and the order the model predicts
between stock and the dedicated-cpu series holds."""
import pytest

from hil.report.compare import compare
from hil.scenario.host_profile import load_host_profile
from reliability import run_hil

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    d = tmp_path_factory.mktemp("calibrate")
    proc = run_hil(None, "calibrate", "--accel", "tcg", "-o", str(d / "host.yaml"), "--out", str(d / "run"))
    if proc.returncode == 2 and "calibrate on a quiet host" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])      # hil's own finding: the host was busy
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)
    return d / "host.yaml"


def _judged_pass(run, case_name="dev-msi latency"):
    case = run.result.case(case_name)
    assert case is not None, [c.name for c in run.result.cases]
    if case.verdict.value == "ERROR" and case.detail.startswith("inconclusive"):
        # the verdict's own finding: a latency outside its band while other work held L0's CPUs
        # (measured: load, other_cpu) says nothing of the kernel, so this test cannot conclude
        pytest.skip(case.detail)
    assert case.verdict.value == "PASS", (case.detail, [(r.reason, r.predicted, r.measured) for r in case.rows])
    assert case.rows and all(r.judged for r in case.rows), case.detail
    return case


def test_calibration_measures_each_mechanism(profile):
    cal, prov = load_host_profile(profile)
    assert set(cal.measured) == {"exit_entry", "userspace", "halt_wakeup", "ipi", "nmi"}
    c = cal.costs
    assert min(c.exit_entry, c.userspace, c.halt_wakeup, c.ipi) > 0
    # a halt wake-up (L1's timer interrupt, its handler, the vCPU thread woken) costs more than
    # the exit round trip it follows
    assert c.halt_wakeup > c.exit_entry
    assert cal.at[10].exit_entry <= c.exit_entry <= cal.at[90].exit_entry
    assert prov["accel"] == "tcg" and prov["qemu"].startswith("QEMU") and prov["tsc_khz"] > 0


def test_device_latency_judged_against_the_calibrated_model(hil_lab, profile):
    run = hil_lab.run("device-edu-msi", f"host_profile={profile}", "workload.ops.0.count=64")
    case = _judged_pass(run)
    lat = next(o for o in run.result.to_dict()["measurement"]["ops"] if o["op"] == "dev-msi")["latency"]["lat"]
    assert len(lat["samples"]) == lat["n"] == 64
    # the calibrated path: each MSI taken on L1 CPU 1, the vCPU kicked on CPU 0 (nested-svm-edu)
    assert run.measurement.devices["vfio-pci"]["host"]["host_irqs"]["per_cpu"] == {"0": 0, "1": 64}
    assert case.rows[0].predicted.low <= lat["p50"] <= case.rows[0].predicted.high
    assert case.extra["costs_from"] == str(profile)


def test_a_run_with_calibration_ops_uses_its_own_figures(hil_lab, profile):
    run = hil_lab.run("calibrate", f"host_profile={profile}")
    case = _judged_pass(run)
    assert "this run's exit_entry, userspace, halt_wakeup" in case.extra["costs_from"]


@pytest.mark.deep    # fast tier: the calibrated device latency
def test_dedicated_no_slower_than_stock_as_the_model_predicts(hil_lab, profile):
    stock = hil_lab.run("device-edu-msi", f"host_profile={profile}", "workload.ops.0.count=48")
    dedicated = hil_lab.run("device-edu-msi-dedicated", f"host_profile={profile}", "workload.ops.0.count=48")
    _judged_pass(stock)
    _judged_pass(dedicated)
    docs = [r.result.to_dict() for r in (stock, dedicated)]
    c = compare({docs[0]["scenario"]: docs[0]}, {docs[1]["scenario"]: docs[1]}, latency_order=True)
    assert [o.ok for o in c.orders] == [True], [o.text() for o in c.orders]
