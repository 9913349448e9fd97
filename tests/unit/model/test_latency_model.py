"""The cost model calibrated from timings (hil/model/latency.py): costs read back off the
model's own paths, the band's bounds, and the order it predicts between profiles."""
from dataclasses import replace

import pytest

from hil.model.cost import HostCosts
from hil.model.errors import ModelError
from hil.model.latency import (P50_DRIFT, TAIL_NS, Calibrated, CalibrationOp, calibrate, latency_band, ordered,
                               path_cycles, quantile)
from hil.scenario.probe_ops import spec

TRUE = HostCosts(exit_entry=115_000, ipi=90_000, nmi=90_000, injection=500, userspace=87_000, guest_handler=300,
                 halt_wakeup=1_100_000)
KHZ = 2_500_000
TIMER = 1000 * KHZ // 1000      # hlt's 1000 us timer period, in cycles
MSI = spec("dev-msi").latency_path


def samples(path, costs, fixed=0, n=101, spread=0.1):
    """n timings of a path under `costs`, spread evenly +-spread around it (median exact)."""
    base = path_cycles(path, "stock-svm", "svm", costs) + fixed
    return tuple(round(base * (1 - spread + 2 * spread * i / (n - 1))) for i in range(n))


def ops(costs=TRUE, spread=0.1):
    return [CalibrationOp("cpuid", ("exit_entry",), spec("cpuid").events, samples(spec("cpuid").events, costs, 0, 101, spread)),
            CalibrationOp("pio-user", ("userspace",), spec("pio-user").events,
                          samples(spec("pio-user").events, costs, 0, 101, spread * 0.1)),
            CalibrationOp("hlt", ("halt_wakeup",), spec("hlt").events,
                          samples(spec("hlt").events, costs, TIMER, 101, spread * 0.05), TIMER),
            CalibrationOp("dev-msi", ("ipi", "nmi"), MSI, samples(MSI, costs, 0, 101, spread * 0.2))]


def test_calibration_reads_each_cost_back_off_the_models_paths():
    cal = calibrate(ops(), "stock-svm", "svm", HostCosts())
    # stock SVM: cpuid is one exit; pio-user one exit + a return to QEMU; hlt three exits (TMICT,
    # HLT, EOI), a wake-up, an injection and the handler besides the timer; an edu MSI one exit,
    # its delivery, an injection and the handler
    for c in ("exit_entry", "userspace", "halt_wakeup", "ipi", "nmi"):
        assert abs(getattr(cal.costs, c) - getattr(TRUE, c)) <= 2, c
    assert cal.measured == ("exit_entry", "userspace", "halt_wakeup", "ipi", "nmi")
    assert cal.at[10].exit_entry < cal.costs.exit_entry < cal.at[90].exit_entry
    assert cal.costs.bounce == HostCosts().bounce             # not measured: the base profile's
    assert cal.sources["halt_wakeup"] == "hlt (101 samples)"


def test_a_cost_read_off_a_wider_earlier_op_keeps_its_quantiles_in_order():
    """cpuid spread wide (p10 far below its p50), the MSI tight: ipi at p10 is the MSI's p10
    less cpuid's p10, above ipi at p50. Ordered, the p10 is the p50's: the band's fast path then
    is no slower than its nominal one."""
    o = ops()
    wide = replace(o[0], samples=samples(spec("cpuid").events, TRUE, 0, 101, 0.5))
    tight = replace(o[3], samples=samples(MSI, TRUE, 0, 101, 0.01))
    cal = calibrate([wide, tight], "stock-svm", "svm", HostCosts())
    assert cal.at[10].exit_entry < cal.costs.exit_entry
    assert cal.at[10].ipi == cal.costs.ipi <= cal.at[90].ipi
    band = latency_band(MSI, "stock-svm", "svm", cal, KHZ)
    assert band.p50_low * P50_DRIFT <= band.nominal


def test_the_tail_is_the_largest_excess_of_a_sample_over_its_median():
    o = ops()
    slow = o[0].samples[:-2] + (10**7, 10**7)      # two host preemptions in cpuid's 101 iterations
    cal = calibrate([replace(o[0], samples=slow)] + o[1:], "stock-svm", "svm", HostCosts())
    assert cal.tail == 10**7 - quantile(slow, 50)
    one = o[0].samples[:-1] + (10**7,)             # one is enough: a judged p99 of < 100 samples is their max
    assert calibrate([replace(o[0], samples=one)] + o[1:], "stock-svm", "svm", HostCosts()).tail == cal.tail
    assert calibrate(o, "stock-svm", "svm", HostCosts()).tail < 10**6


def test_an_op_that_cannot_measure_its_cost_under_the_profile_is_an_error():
    # disable-exits: HLT does not exit, no wake-up is KVM's to price
    with pytest.raises(ModelError, match="hlt: under disable-exits its path has no halt_wakeup"):
        calibrate(ops()[2:3], "disable-exits", "svm", TRUE)
    with pytest.raises(ModelError, match="no samples"):
        calibrate([replace(ops()[0], samples=())], "stock-svm", "svm", TRUE)


def test_band_bounds_and_their_reasons():
    cal = calibrate(ops(), "stock-svm", "svm", HostCosts())
    band = latency_band(MSI, "stock-svm", "svm", cal, KHZ)
    assert band.nominal == path_cycles(MSI, "stock-svm", "svm", cal.costs)
    assert band.p50_low == int(path_cycles(MSI, "stock-svm", "svm", cal.at[10]) / P50_DRIFT)
    assert band.p50_high == int(path_cycles(MSI, "stock-svm", "svm", cal.at[90], "high") * P50_DRIFT)
    assert band.p50_low < band.nominal < band.p50_high < band.p99_high
    # finite: the slow path, the calibration's tail and the stated allowance, nothing more
    assert band.p99_high == path_cycles(MSI, "stock-svm", "svm", cal.at[90], "high") + cal.tail + TAIL_NS * KHZ // 10**6
    assert set(band.reasons) == {"p50_low", "p50_high", "p99_high"} and "L0" in band.reasons["p99_high"]
    ns = band.scaled(1e6 / KHZ)
    assert ns["nominal"] == pytest.approx(band.nominal / 2.5)      # 2.5 cycles a ns at 2.5 GHz


def test_the_model_orders_dedicated_below_stock_for_an_assigned_devices_msi():
    cal = calibrate(ops(), "stock-svm", "svm", HostCosts())
    stock = latency_band(MSI, "stock-svm", "svm", cal, KHZ)
    v2 = latency_band(MSI, "dedicated-v2", "svm", cal, KHZ)
    # dedicated-v2: the kick may need no exit (an NMI in guest mode, or none): one round trip less
    assert v2.nominal == stock.nominal - cal.costs.exit_entry
    assert ordered(stock, v2) and not ordered(v2, stock)


def test_profiles_from_files_and_a_runs_own_figures_over_them():
    cal = calibrate(ops(), "stock-svm", "svm", HostCosts())
    back = Calibrated.from_mapping({"cycles": cal.to_mapping()["cycles"], "calibration": cal.to_mapping()})
    assert back == cal
    plain = Calibrated.from_mapping({"cycles": {"exit_entry": 7}})
    assert plain.measured == () and plain.at[10] == plain.at[90] == plain.costs and plain.tail == 0
    run = calibrate(ops(replace(TRUE, exit_entry=50_000))[:1], "stock-svm", "svm", HostCosts())
    mixed = cal.overlaid(run)
    assert mixed.costs.exit_entry == run.costs.exit_entry and mixed.costs.ipi == cal.costs.ipi
    with pytest.raises(ModelError, match="tail_cycles"):
        Calibrated.from_mapping({"cycles": {}, "calibration": {"tail_cycles": -1}})
