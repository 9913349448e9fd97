"""Device ops in the verdict (fake measurements): exits against the model, every interrupt
taken and timed, every frame through in order, the vfio interrupts L1 saw."""
from hil.lab.results import op_latency
from hil.measurement import OpMeasurement
from tests.unit.fakes import measurement, scenario, verdict

N = 37


def edu_op(n=N, irqs=None, samples=None, msr=None):
    lat = [3000 + i for i in range(samples if samples is not None else n)]
    return OpMeasurement("dev-msi", n, {"msr": n if msr is None else msr, "interrupt": n}, 10**6,
                         {"count": n, "irqs": n if irqs is None else irqs, "raised": n, "tsc_khz": 3_000_000},
                         {"lat": lat}, op_latency({"lat": lat}, 3_000_000))


def edu_run(op, vfio_total=N):
    sc = scenario("device-edu-msi", f"workload.ops.0.count={N}")
    m = measurement([op], devices={"vfio-pci": {"info": {"bdf": "0000:00:03.0"},
                                                "host": {"host_irqs": {"total": vfio_total}}}})
    return verdict(sc, m)


def test_edu_msi_passes_with_one_eoi_exit_per_interrupt_and_reports_latency():
    r = edu_run(edu_op())
    case = r.case("dev-msi")
    assert r.verdict.value == "PASS", [(c.name, c.detail) for c in r.cases]
    lat = case.extra["latency_ns"]["lat"]
    assert lat["n"] == N and lat["p50"] == lat["min"] + (N // 2) / 3 and lat["histogram"]
    assert r.to_dict()["measurement"]["ops"][0]["latency"]["lat"]["p99"] == lat["p99"]


def test_edu_msi_fails_on_a_missing_eoi_exit_a_lost_interrupt_or_sample():
    assert "msr: predicted 37, measured 36" in edu_run(edu_op(msr=N - 1)).case("dev-msi").detail
    assert "interrupts taken by the guest" in edu_run(edu_op(irqs=N - 1)).case("dev-msi").detail
    assert "latency samples" in edu_run(edu_op(samples=N - 2)).case("dev-msi").detail
    assert "vfio interrupts in L1" in edu_run(edu_op(), vfio_total=N + 3).case("dev-msi").detail


def rx_run(frames=N, in_order=1, sent=N, msr=10):
    sc = scenario("virtio-net-rx", f"workload.ops.0.count={N}")
    # 37 frames in 10 interrupts (the NIC coalesced them): one EOI per interrupt taken
    op = OpMeasurement("net-rx", N, {"msr": msr, "interrupt": 10}, 10**6,
                       {"count": N, "irqs": 10, "frames": frames, "in_order": in_order, "tsc_khz": 3_000_000})
    return verdict(sc, measurement([op], frames={"frame-sender": {"sent": sent}}))


def test_net_rx_frames_all_through_in_order():
    assert rx_run().case("net-rx").verdict.value == "PASS", rx_run().case("net-rx").detail
    assert "frames received in order (1: all): predicted 1, measured 0" in rx_run(in_order=0).case("net-rx").detail
    assert "frames sent into the tap" in rx_run(sent=5).case("net-rx").detail
    assert "msr: predicted 10, measured 11" in rx_run(msr=11).case("net-rx").detail


def test_net_tx_frames_counted_on_the_tap():
    sc = scenario("virtio-net-tx", f"workload.ops.0.count={N}")
    # the notify: an npf (ioeventfd), no io; the TX interrupt often lands before the vCPU is back in
    op = OpMeasurement("net-tx", N, {"npf": N, "msr": N, "interrupt": 13, "vintr": 1}, 10**6,
                       {"count": N, "irqs": N, "frames": N, "notifies": N, "tsc_khz": 3_000_000}, {"lat": [1] * N})
    ok = verdict(sc, measurement([op], frames={"frame-counter": {"frames": N, "in_order": N}}))
    assert ok.case("net-tx").verdict.value == "PASS", ok.case("net-tx").detail
    # the device asked not to be notified for some frames: one npf per notify the guest made
    op.reported["notifies"] = 20
    assert "npf: predicted 20, measured 37" in verdict(sc, measurement([op], frames={
        "frame-counter": {"frames": N, "in_order": N}})).case("net-tx").detail
    op.exits["npf"] = 20
    assert verdict(sc, measurement([op], frames={"frame-counter": {"frames": N, "in_order": N}})
                   ).case("net-tx").verdict.value == "PASS"
    lost = verdict(sc, measurement([op], frames={"frame-counter": {"frames": N - 1, "in_order": N - 1}}))
    assert "frames on the tap: predicted 37, measured 36" in lost.case("net-tx").detail
