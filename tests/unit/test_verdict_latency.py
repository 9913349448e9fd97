"""Latency in the verdict (fake timings): a device op's p50 and p99 inside the band the model
predicts from the calibrated costs PASS, outside FAIL, outside on an overloaded host ERROR
(inconclusive), and without calibrated costs they are reported, not judged."""
from pathlib import Path

import pytest

from hil.lab.results import op_latency
from hil.measurement import OpMeasurement
from hil.model.cost import HostCosts
from hil.model.latency import Calibrated, CalibrationOp, calibrate, path_cycles
from hil.scenario.host_profile import dump_host_profile
from hil.scenario.probe_ops import spec
from tests.unit.fakes import measurement, scenario, verdict

KHZ = 2_500_000
EXIT, DELIVERY = 115_000, 90_000          # cycles: one exit round trip, an edu MSI's delivery
N = 64


def spread(center, n=N, width=0.05):
    return [round(center * (1 - width + 2 * width * i / (n - 1))) for i in range(n)]


def simple(op, exits, per_iter):
    iters = spread(per_iter)
    return OpMeasurement(op, N, {r: k * N for r, k in exits.items()}, sum(iters),
                         {"count": N, "tsc_khz": KHZ, "samples": N, "timer_us": 1000}, {"iter": iters})


def edu(lat_cycles):
    return OpMeasurement("dev-msi", N, {"msr": N, "interrupt": N}, 10**7,
                         {"count": N, "irqs": N, "raised": N, "tsc_khz": KHZ}, {"lat": lat_cycles},
                         op_latency({"lat": lat_cycles}, KHZ))


def run(lat_cycles, *overrides, load=0.5, calibration_ops=True):
    sc = scenario("calibrate", *(f"workload.ops.{i}.count={N}" for i in range(4)), *overrides)
    ops = [simple("cpuid", {"cpuid": 1}, EXIT), simple("pio-user", {"io": 1}, EXIT + 87_000),
           simple("hlt", {"hlt": 1, "msr": 2}, 3 * EXIT + 1_100_000 + 800 + KHZ)] if calibration_ops else []
    m = measurement(ops + [edu(lat_cycles)], devices={"vfio-pci": {"host": {"host_irqs": {"total": N}}}})
    m.provenance = {"host_load": {"before": load, "after": load, "nproc": 2}, "accel": {"accel": "tcg"}}
    if not calibration_ops:       # only dev-msi: the scenario's other ops were not run
        return verdict(scenario("device-edu-msi", f"workload.ops.0.count={N}", *overrides), m)
    return verdict(sc, m)


@pytest.fixture
def profile(tmp_path) -> Path:
    """A kept host profile with the device delivery calibrated (as hil calibrate writes one)."""
    msi = spec("dev-msi").latency_path
    costs = HostCosts(exit_entry=EXIT, ipi=DELIVERY, nmi=DELIVERY)
    lat = tuple(spread(path_cycles(msi, "stock-svm", "svm", costs), 101))
    cpuid = tuple(spread(EXIT, 101))
    cal = calibrate([CalibrationOp("cpuid", ("exit_entry",), spec("cpuid").events, cpuid),
                     CalibrationOp("dev-msi", ("ipi", "nmi"), msi, lat)], "stock-svm", "svm", HostCosts())
    path = tmp_path / "host.yaml"
    path.write_text(dump_host_profile(cal, {"accel": "tcg", "date": "2026-12-02"}, "test lab"))
    return path


def nominal():
    return path_cycles(spec("dev-msi").latency_path, "stock-svm", "svm",
                       HostCosts(exit_entry=EXIT, ipi=DELIVERY, nmi=DELIVERY))


def test_latency_inside_the_band_passes(profile):
    r = run(spread(nominal()), f"host_profile={profile}")
    case = r.case("dev-msi latency")
    assert r.verdict.value == "PASS", [(c.name, c.detail) for c in r.cases]
    assert all(row.judged for row in case.rows)
    low, high = case.rows[0].predicted.low, case.rows[0].predicted.high
    assert low < nominal() * 1e6 / KHZ < high
    assert "this run's exit_entry, userspace, halt_wakeup" in case.extra["costs_from"]
    assert int(case.extra["predicted_ns"]["lat"]["high"]) == case.rows[1].predicted.high


def test_a_p50_above_the_band_fails(profile):
    r = run(spread(5 * nominal()), f"host_profile={profile}")
    case = r.case("dev-msi latency")
    assert r.verdict.value == "FAIL" and case.verdict.value == "FAIL"
    assert case.detail.startswith("p50 ns (model")


def test_a_p50_far_below_the_band_fails(profile):
    case = run(spread(nominal() // 5), f"host_profile={profile}").case("dev-msi latency")
    assert case.verdict.value == "FAIL" and "p50" in case.detail


def test_a_tail_beyond_the_allowance_fails_and_on_a_busy_host_is_inconclusive(profile):
    lat = spread(nominal())
    lat[-1] = lat[-2] = KHZ * 40          # two 40 ms samples in 64: the p99
    case = run(lat, f"host_profile={profile}").case("dev-msi latency")
    assert case.verdict.value == "FAIL" and case.detail.startswith("p99 ns")
    busy = run(lat, f"host_profile={profile}", load=5.0).case("dev-msi latency")
    assert busy.verdict.value == "ERROR" and busy.detail.startswith("inconclusive: p99")


def test_without_calibrated_delivery_latency_is_reported_not_judged():
    # the run measured its own exit round trip, but nothing priced an edu MSI's delivery
    case = run(spread(5 * nominal())).case("dev-msi latency")
    assert case.verdict.value == "PASS" and not any(row.judged for row in case.rows)
    assert "ipi, nmi not calibrated" in case.detail


def test_a_profile_calibrated_under_another_accelerator_is_not_used(tmp_path, profile):
    other = tmp_path / "kvm.yaml"
    other.write_text(profile.read_text().replace("accel: tcg", "accel: kvm"))
    case = run(spread(5 * nominal()), f"host_profile={other}").case("dev-msi latency")
    assert case.verdict.value == "PASS" and "calibrated under kvm" in case.detail


def test_the_machine_profile_is_used_when_the_scenario_names_none(profile, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "hil").mkdir(parents=True)
    (tmp_path / "cfg" / "hil" / "host-profile.yaml").write_text(profile.read_text())
    case = run(spread(5 * nominal()), calibration_ops=False).case("dev-msi latency")
    assert case.verdict.value == "FAIL" and "host-profile.yaml" in case.extra["costs_from"]


def test_ops_whose_latency_the_model_does_not_price_say_why():
    sc = scenario("virtio-net-tx", f"workload.ops.0.count={N}")
    op = OpMeasurement("net-tx", N, {"npf": N, "msr": N, "interrupt": N}, 10**6,
                       {"count": N, "irqs": N, "frames": N, "notifies": N, "tsc_khz": KHZ}, {"lat": [KHZ] * N},
                       op_latency({"lat": [KHZ] * N}, KHZ))
    r = verdict(sc, measurement([op], frames={"frame-counter": {"frames": N, "in_order": N}}))
    case = r.case("net-tx latency")
    assert case.verdict.value == "PASS" and "backend thread" in case.detail
    assert case.rows[0].measured == 1_000_000 and not case.rows[0].judged


def test_a_bad_host_profile_is_an_error_at_its_file_and_line(tmp_path):
    from hil.scenario import ConfigError
    bad = tmp_path / "bad.yaml"
    bad.write_text("cycles:\n  exit_entry: 5\n  exit_entri: 7\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3.*cycles.exit_entri.*unknown cost"):
        scenario("calibrate", f"host_profile={bad}")
    with pytest.raises(ConfigError, match="no such host profile"):
        scenario("calibrate", f"host_profile={tmp_path / 'none.yaml'}")
    # a calibrated profile reads back as written
    assert Calibrated.from_mapping({"cycles": {"exit_entry": 5}}).costs.exit_entry == 5


def test_other_work_on_the_host_makes_an_outlying_latency_inconclusive(profile):
    lat = spread(nominal())
    lat[-1] = lat[-2] = KHZ * 40
    r = run(lat, f"host_profile={profile}")
    case = r.case("dev-msi latency")
    assert case.verdict.value == "FAIL"
    m_load = {"before": 0.5, "after": 0.5, "nproc": 2, "other_cpu": 0.3}
    from tests.unit.fakes import measurement as fake
    from hil.verdict import judge
    from hil.scenario.prediction import predict_scenario
    sc = scenario("device-edu-msi", f"workload.ops.0.count={N}", f"host_profile={profile}")
    m = fake([edu(lat)], devices={"vfio-pci": {"host": {"host_irqs": {"total": N}}}})
    m.provenance = {"host_load": m_load, "accel": {"accel": "tcg"}}
    busy = judge(sc, predict_scenario(sc, "svm"), m).case("dev-msi latency")
    assert busy.verdict.value == "ERROR" and "took 30% of the host's CPU time" in busy.detail


def test_other_cpu_is_the_hosts_busy_time_less_the_labs_own():
    import os
    from hil.lab.run import _other_cpu
    tick, n = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    # over 1 s the host was busy 1.2 CPU-seconds, the L1 QEMU 1.0 of them: 0.2 CPU-s of other work
    assert _other_cpu((0 + 1, 5), (int(1.2 * tick) + 1, 5 + tick), 1.0) == round(0.2 / n, 3)
    assert _other_cpu((0, 0), (10**6, 0), 1.0) == 0.0          # /proc could not tell before: nothing measured
