"""One runner for every front end (`hil run`, the pytest plugin): scenario -> predictions
(before anything boots) -> images -> L1 (booted once per topology, reused, booted again
when it died) -> L2 run -> Measurement -> verdict -> RunResult, with every failure of the
lab mapped to ERROR and every missing capability to SKIP. It never raises for the lab: a
bug in hil is an ERROR result carrying the traceback."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from hil.lab import signals
from hil.lab.assets.cache import cache_root
from hil.lab.agent.protocol import L2Request
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.l1 import L1Session, delete_snapshot
from hil.lab.run import Prepared, boot_request_for, expected_archs, open_l1, parked_snapshot_for, prepare, run_on
from hil.measurement import Measurement
from hil.scenario import Scenario
from hil.scenario.prediction import ScenarioPrediction, predict_scenario
from hil.verdict import RunResult, error_result, judge, skip_result

log = logging.getLogger(__name__)


class RunTimeout(LabError):
    """The whole run took longer than its topology's timeout."""


@contextlib.contextmanager
def watchdog(seconds: float, what: str) -> Iterator[None]:
    """Raise RunTimeout in the main thread after `seconds` (elsewhere: no watchdog)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        signals.raise_for(signum, RunTimeout(f"{what} did not finish within its {seconds:.0f} s timeout (topology timeout)"),
                          frame)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class LabBusy(LabError):
    """Another hil lab holds this machine and the caller asked not to wait."""


_held = 0     # lab_lock depth in this process: a batch holds it around its runs


@contextlib.contextmanager
def lab_lock(wait: bool = True) -> Iterator[None]:
    """One lab at a time on this machine: TCG timing (the kick race's timeouts) breaks when
    emulators share the CPUs. A second run waits, and says why (or raises LabBusy when
    not `wait`). Re-entrant within a process, so a batch keeps the box between its runs."""
    global _held
    if _held:
        _held += 1
        try:
            yield
        finally:
            _held -= 1
        return
    path = cache_root() / "lab.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "pid unknown"
            if not wait:
                raise LabBusy(f"another hil lab runs on this machine ({holder}; lock {path})") from None
            log.warning("another hil lab runs on this machine (%s): waiting for it", holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:                               # who holds it, for the message above: a note, not a need
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        except OSError as e:               # a full disk: the lock itself holds
            log.debug("lab lock note not written: %s", e)
        _held = 1
        try:
            yield
        finally:
            _held = 0
    finally:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)                       # releases the lock


def predict_before_boot(scenario: Scenario, accel: str | None = None) -> dict[str, ScenarioPrediction]:
    """The prediction for every architecture this lab's L1 may have. Raises ConfigError
    (naming the key) when the model cannot answer: nothing has been built or booted yet."""
    archs = (scenario.arch,) if scenario.arch != "auto" else expected_archs(scenario.topology, accel)
    return {arch: predict_scenario(scenario, arch) for arch in archs}


@dataclass
class _L1:
    session: L1Session
    prepared: Prepared
    parked: Path | None = None    # the parked snapshot its first run restored, or makes (hil/lab/run.py)
    boot_request: L2Request | None = None   # booted with this L2 request: its init started that L2 QEMU
    used: bool = False            # a run has been on it: it is no longer the L1 a parked snapshot holds


@dataclass
class Runner:
    """Runs scenarios on one lab; L1 sessions are kept per topology until close()."""
    accel: str | None = None
    keep_sessions: bool = True
    host: bool = False            # hil run --host: the L1 side on this machine (hil.lab.bare_metal)
    _l1: dict[str, _L1] = field(default_factory=dict)
    last_measurement: Measurement | None = None      # of the latest run that got that far
    sweep: bool = True               # first remove what a hil killed outright left (hil/lab/sweep.py)
    #: hil run NAME (one scenario): L1 restored with the scenario's L2 QEMU parked in it, the
    #: snapshot made by the first such run (batches and the pytest plugin start L2 per run)
    park: bool = False
    #: a stop signal ended a run (its ERROR says so): a batch or a pytest session runs no more
    stopped: bool = False

    def __post_init__(self) -> None:
        if self.sweep:
            from hil.lab.sweep import sweep
            sweep()

    def l1_for(self, scenario: Scenario, log_dir: Path) -> tuple[L1Session, Prepared]:
        """The scenario topology's running L1 (booted or restored on first use)."""
        live = self._session(scenario, log_dir)
        return live.session, live.prepared

    def _session(self, scenario: Scenario, log_dir: Path, deadline: float | None = None) -> _L1:
        """The topology's L1: images built (no time limit: builds have their own), then booted
        or restored under the run's watchdog (`deadline` seconds, the topology timeout)."""
        topo = scenario.topology
        key = repr(topo)      # the whole topology: an override makes another L1
        live = self._l1.get(key)
        if live is not None and not live.session.machine.is_running():
            log.warning("L1 of %s is gone (QEMU exit code %s): booting it again", topo.name,
                        live.session.machine.exitcode)
            live.session.close()
            del self._l1[key]
            live = None
        if live is None and self.host:
            from hil.lab.bare_metal import HostSession, prepare_host
            host = HostSession(log_dir)
            host.start()
            live = self._l1[key] = _L1(host, prepare_host(scenario.workload.kind == "probe"))  # type: ignore[arg-type]
        if live is None:
            prep = prepare(topo, scenario.workload.kind == "probe", self.accel)
            parked = parked_snapshot_for(scenario, prep) if self.park else None
            # a booting L1 starts its first run's L2 QEMU as its agent comes up
            boot = boot_request_for(scenario, prep)
            t0 = time.monotonic()
            with watchdog(deadline or 0, f"L1 of {topo.name}"):
                session = _start_l1(topo.name, lambda: open_l1(topo, prep, log_dir, parked, boot[1] if boot else None))
            prep.timings["l1_boot"] = time.monotonic() - t0
            live = _L1(session, prep, parked, boot[0] if boot else None)
            self._l1[key] = live
        return live

    def run(self, scenario: Scenario, out: Path,
            predictions: dict[str, ScenarioPrediction] | None = None) -> RunResult:
        """Run one scenario, its logs under `out`. Predictions are made first when not given
        (a ConfigError then propagates: bad input, nothing booted)."""
        predictions = predictions if predictions is not None else predict_before_boot(
            scenario, "kvm" if self.host else self.accel)
        out.mkdir(parents=True, exist_ok=True)
        self.last_measurement = None
        try:
            with lab_lock():
                l1 = self._session(scenario, out, deadline=scenario.topology.timeout)
                with watchdog(scenario.topology.timeout, f"scenario {scenario.name}"):
                    fresh, l1.used = not l1.used, True
                    m = self.last_measurement = run_on(l1.session, scenario, l1.prepared, out,
                                                       l1.parked if fresh else None, l1.boot_request if fresh else None)
            pred = predictions.get(m.arch)
            if pred is None:
                return error_result(scenario.name, f"L1 has {m.arch}, predicted for {', '.join(predictions)} only",
                                    logs=m.logs, provenance=m.provenance)
            return judge(scenario, pred, m)
        except CapabilityMissing as e:
            return skip_result(scenario.name, str(e))
        except (LabError, OSError, subprocess.SubprocessError) as e:   # the lab broke (a command failed, timed out)
            for live in self._l1.values():
                if isinstance(live.session, L1Session):       # --host's session restores nothing
                    live.session.distrust_saved_info()
            return error_result(scenario.name, f"{type(e).__name__}: {e}" if not isinstance(e, LabError) else str(e),
                                logs=_logs(out))
        except KeyboardInterrupt as e:
            signals.stopping()
            self.stopped = True
            return error_result(scenario.name, f"interrupted ({e})", logs=_logs(out))
        except Exception as e:     # a bug in hil: never a FAIL, never a traceback without a result
            (out / "hil-traceback.txt").write_text(traceback.format_exc())
            log.debug("hil bug", exc_info=True)
            return error_result(scenario.name, f"hil bug: {type(e).__name__}: {e} (traceback in "
                                f"{out / 'hil-traceback.txt'})", logs=_logs(out))
        finally:
            if not self.keep_sessions:
                self.close()

    def close(self) -> None:
        for live in self._l1.values():
            live.session.close()
        self._l1.clear()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _start_l1(name: str, open_session: Callable[[], L1Session]) -> L1Session:
    """Restore L1 from its snapshot (the parked one, else the idle one), or boot it. A snapshot
    that does not restore (truncated, from another QEMU) is deleted and L1 started again from
    what is left: a bad cache entry heals, it does not fail every later run."""
    while True:
        session = open_session()
        log.info("L1 %s: %s", name, "restoring its snapshot" if session.restore else "booting")
        try:
            session.start()
            return session
        except (RunTimeout, CapabilityMissing):
            session.close()
            raise
        except LabError as e:
            # QEMU refusing a snapshot fails the migration or exits 1; one stopped by a signal
            # (exit code 0 after SIGTERM, negative after SIGKILL) says nothing about its snapshot
            code = session.machine.exitcode
            refused = code is None or code > 0
            session.close()
            if not session.restore or session.snapshot is None or not refused:
                raise
            log.warning("L1 %s: its snapshot %s did not restore (%s): deleting it, starting L1 anew", name,
                        session.snapshot, str(e).splitlines()[0])
            delete_snapshot(session.snapshot)     # the next session no longer restores it
        except BaseException:
            session.close()
            raise


def _logs(out: Path) -> dict[str, str]:
    return {p.name: str(p) for p in sorted(out.glob("*.log"))} | (
        {"repro": str(out / "repro.sh")} if (out / "repro.sh").exists() else {})
