"""The cli-window op's verdicts on fake measurements (pure logic): on every profile no interrupt
is taken with IF=0; each one pending across a window costs a virtual injection's profile at most
one interrupt-window exit and direct delivery none; a run where nothing waited for a sti proves
nothing (ERROR)."""
from hil.lab import health
from hil.measurement import KickTrace, OpMeasurement
from hil.model import PROFILES
from hil.model.race import KickLandings, kick_bounds
from hil.model.types import Bound
from tests.unit.fakes import measurement, scenario, verdict

N = 24


def reported(masked=0, at_sti=N - 1, irqs=N):
    return {"count": N, "irqs": irqs, "masked": masked, "at_sti": at_sti, "windows": 90, "masked_rip": 0}


def direct(*, exits=None, **rep):
    op = OpMeasurement("cli-window", N, exits or {}, reported=reported(**rep))
    trace = KickTrace(accepted=N, io_thread_msis=[1] * N, series_traced=True, relays=N)
    m = measurement([op], exits_all={"io": 10, **(exits or {})}, kick_trace=trace,
                    l1_health=health.health(True, "", [], 0))
    return verdict(scenario("direct-cli-window"), m)


def stock(*, exits=None, **rep):
    exits = {"interrupt": N, "msr": N, "vintr": N - 1} if exits is None else exits
    op = OpMeasurement("cli-window", N, exits, reported=reported(**rep))
    return verdict(scenario("cli-window"), measurement([op], exits_all=dict(exits),
                                                       kick_trace=KickTrace(accepted=N, io_thread_msis=[1] * N)))


def case(r):
    return next(c for c in r.cases if c.name == "cli-window")


def test_interrupts_that_waited_for_the_sti_pass_with_no_exit_under_direct_delivery():
    r = direct()
    assert r.verdict.value == "PASS", [(c.name, c.detail) for c in r.cases]


def test_an_interrupt_taken_with_if_0_fails_on_every_profile():
    assert "IF=0" in case(direct(masked=1, at_sti=N - 2)).detail
    assert direct(masked=1, at_sti=N - 2).verdict.value == "FAIL"
    assert stock(masked=1, at_sti=N - 2).verdict.value == "FAIL"
    for p in PROFILES.values():
        checks = {c.name: c.bound for c in kick_bounds(p, KickLandings(
            sent=N, taken=N, late=0, window=0, window_pending=0, found_exiting_no_nmi=0, guest_nmis_all_vcpus=0,
            unrelated_exits=0, host_interrupts=None, io_thread=True, relayed=N if p.direct_msi else 0,
            if_windows=True)).checks}
        assert checks["taken_masked"] == Bound.exactly(0), p.name


def test_a_window_exit_under_direct_delivery_fails_stock_has_at_most_one_per_interrupt():
    assert direct(exits={"vintr": 1}).verdict.value == "FAIL"
    assert stock().verdict.value == "PASS", [(c.name, c.detail) for c in stock().cases]
    bad = stock(exits={"interrupt": N, "msr": N, "vintr": N + 1})
    assert bad.verdict.value == "FAIL" and "interrupt-window" in case(bad).detail


def test_nothing_pending_across_a_window_is_inconclusive():
    r = direct(at_sti=0)
    assert r.verdict.value == "ERROR" and "pending across a cli window" in case(r).detail


def test_a_probe_that_does_not_say_where_interrupts_landed_is_an_error():
    op = OpMeasurement("cli-window", N, {}, reported={"count": N, "irqs": N})
    trace = KickTrace(accepted=N, io_thread_msis=[1] * N, series_traced=True, relays=N)
    r = verdict(scenario("direct-cli-window"), measurement([op], kick_trace=trace,
                                                           l1_health=health.health(True, "", [], 0)))
    assert r.verdict.value == "ERROR" and "where" in case(r).detail


def test_the_window_is_a_quarter_of_the_msi_interval(tmp_path):
    from hil.lab.assets.probe import ProbeImage
    from hil.lab.request import build_request
    kernel = tmp_path / "probe.elf"
    kernel.write_bytes(b"\x7fELF")
    probe = ProbeImage(kernel, (0x101000, 0x102000), {}, "0" * 64)
    req, _ = build_request(scenario("direct-cli-window", "workload.kick_interval_ms=12"), probe)
    assert "cli_window_us=3000" in " ".join(req.argv)
    req, _ = build_request(scenario("direct-msi-burst"), probe)
    assert "cli_window_us" not in " ".join(req.argv)       # only where the op runs
