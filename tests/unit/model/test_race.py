"""The kick race, step by step, for every kind of kick: each outcome from the seed (L135-139:
NMI only when the cmpxchg found IN_GUEST_MODE; L99-113: a handler that acts on nothing), v2/14
(signal unless OUTSIDE), v2/17 (prevent-run: an immediate exit, then `interrupted`, a bounce) and
the port (0003/0004: the same kicks, prevent-run without a bounce)."""
from dataclasses import replace

import pytest

from hil.model import PROFILES
from hil.model.race import (MODE, STEP_IN_GUEST, STEP_WINDOW, STEPS, KickLandings, KickOutcome, enumerate_kicks,
                            kick_at, kick_bounds, signals)
from hil.model.types import Bound

# per step: (seen, exit reason, delay, bounce) with the default later_exits
SEED = [(True, None, 0, False), (True, None, 0, False), (True, None, 0, False), (True, None, None, False),
        (True, "NMI", 1, False), (True, None, 0, False), (True, None, None, False)]
V2 = [(True, None, 0, False), (True, None, 0, False), (True, None, 0, False), (True, "PREEMPT", 1, True),
      (True, "NMI", 1, False), (True, None, 0, False), (True, "NMI", 1, False)]
PORT_V2 = V2[:3] + [(True, "PREEMPT", 1, False)] + V2[4:]
STOCK = [(True, None, 0, False)] * 3 + [(True, "EXTINT", 1, False)] * 2 + [(True, None, 0, False),
                                                                          (True, None, None, False)]


@pytest.mark.parametrize("profile,table", [("slave-v1", SEED), ("dedicated-v1", SEED), ("slave-v2", V2),
                                           ("dedicated-v2", PORT_V2), ("stock-2012", STOCK), ("stock-svm", STOCK),
                                           ("slave-v1-full", V2[:6] + [(True, None, None, False)])])
def test_every_step(profile, table):
    got = enumerate_kicks(PROFILES[profile])
    assert [o.lands_at for o in got] == list(STEPS)
    assert [(o.seen, o.exit_reason, o.delay_steps, o.bounce) for o in got] == table


def test_without_later_exits_the_seed_loses_what_it_delays():
    seed = PROFILES["slave-v1"]
    assert kick_at(seed, STEP_WINDOW, later_exits=False) == KickOutcome("entering", False, None, None)
    assert kick_at(seed, STEPS.index("in-guest-stuck"), later_exits=False).seen is False
    assert kick_at(PROFILES["slave-v2"], STEP_WINDOW, later_exits=False) == KickOutcome(
        "entering", True, "PREEMPT", 1, True, ("prevent-run-exit",))


def test_the_default_for_later_exits_follows_what_still_exits():
    """Delayed, not lost, when HLT or external interrupts exit or EOIs trap."""
    seed = PROFILES["slave-v1"]
    quiet = replace(seed, direct_eoi_x2apic=True)            # nothing left that exits
    assert not kick_at(quiet, STEP_WINDOW).seen
    assert kick_at(replace(quiet, ext_int_exiting="on"), STEP_WINDOW).seen
    assert kick_at(replace(quiet, hlt_exiting=True), STEP_WINDOW).seen
    assert kick_at(seed, STEP_WINDOW).seen                    # v1's EOIs trap


def test_who_signals_from_which_mode():
    assert [MODE[s] for s in STEPS] == ["OUTSIDE_GUEST_MODE"] + ["IN_GUEST_MODE"] * 4 + ["EXITING_GUEST_MODE"] * 2
    v1, v2, stock = PROFILES["slave-v1"], PROFILES["slave-v2"], PROFILES["stock-2012"]
    assert [signals(v1, s) for s in range(len(STEPS))] == [False, True, True, True, True, False, False]
    assert [signals(v2, s) for s in range(len(STEPS))] == [False, True, True, True, True, True, True]
    assert [signals(stock, s) for s in range(len(STEPS))] == [signals(v1, s) for s in range(len(STEPS))]
    assert STEP_WINDOW == 3 and STEP_IN_GUEST == 4


def test_if_windows_no_interrupt_with_if_0_and_who_opens_a_window():
    """cli-window: 0 taken with IF=0 everywhere; a virtual injection waits for KVM's window (at
    most one exit per interrupt), APICv/AVIC and a relayed interrupt wait without one."""
    def checks(profile, **kw):
        k = KickLandings(sent=10, taken=10, late=0, window=0, window_pending=0, found_exiting_no_nmi=0,
                         guest_nmis_all_vcpus=0, unrelated_exits=0, host_interrupts=None, io_thread=True, **kw)
        return {c.name: c.bound for c in kick_bounds(PROFILES[profile], k).checks}
    assert "taken_masked" not in checks("stock-svm")
    assert checks("stock-svm", if_windows=True)["window_exits"] == Bound(0, 10)
    assert checks("dedicated-v2", if_windows=True)["window_exits"] == Bound(0, 10)
    assert checks("stock-svm-avic", if_windows=True)["window_exits"] == Bound.exactly(0)
    assert checks("dedicated-direct", if_windows=True, relayed=10)["window_exits"] == Bound.exactly(0)
    assert checks("dedicated-direct", if_windows=True, relayed=7)["window_exits"] == Bound(0, 3)
    assert all(checks(p, if_windows=True)["taken_masked"] == Bound.exactly(0)
               for p in ("stock-svm", "stock-svm-avic", "dedicated-v1", "dedicated-v2", "dedicated-direct"))
