"""The runner's guarantees, without a lab: a hil bug or a broken lab is an ERROR result
(never an exception, never FAIL), a missing capability is SKIP, the watchdog ends a run that
hangs, and one lab runs at a time."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hil.runner as runner
from hil.lab.errors import CapabilityMissing, LabError
from hil.runner import RunTimeout, Runner, lab_lock, predict_before_boot, watchdog
from tests.unit.fakes import scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("raised,verdict,text", [
    (LabError("L1 did not boot"), "ERROR", "L1 did not boot"),
    (CapabilityMissing("no /dev/kvm"), "SKIP", "no /dev/kvm"),
    (subprocess.CalledProcessError(1, ["make"]), "ERROR", "CalledProcessError"),
    (KeyError("oops"), "ERROR", "hil bug: KeyError"),
])
def test_every_failure_becomes_a_result(tmp_path, cache, monkeypatch, raised, verdict, text):
    def broken(*a, **k):
        raise raised
    monkeypatch.setattr(runner, "prepare", broken)
    sc = scenario("probe-basic", "topology.accel=tcg")
    result = Runner().run(sc, tmp_path / "out")
    assert result.verdict.value == verdict and text in result.error
    if isinstance(raised, KeyError):
        assert "KeyError" in (tmp_path / "out" / "hil-traceback.txt").read_text()


def test_predictions_are_made_for_every_architecture_l1_may_have():
    sc = scenario("probe-basic", "topology.accel=tcg")
    assert set(predict_before_boot(sc)) == {"svm"}
    assert set(predict_before_boot(scenario("probe-basic", "arch=vmx", "profile=stock-vmx"))) == {"vmx"}


def test_the_watchdog_ends_a_run_that_hangs():
    t0 = time.monotonic()
    with pytest.raises(RunTimeout):
        with watchdog(0.3, "a hanging run"):
            time.sleep(5)
    assert time.monotonic() - t0 < 2


def test_a_second_lab_waits_for_the_first(cache):
    code = ("import time; from hil.runner import lab_lock\n"
            "with lab_lock():\n    print('got', flush=True); time.sleep(1.5)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(cache))
    first = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "got"
    t0 = time.monotonic()
    with lab_lock():
        waited = time.monotonic() - t0
    first.wait(10)
    assert waited > 0.5
