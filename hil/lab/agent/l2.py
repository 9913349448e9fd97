"""Run one L2 guest under this host's KVM and measure it: exits per reason (all, and inside
the workload's RIP window), port I/O, userspace exits and KVM's own vCPU counters.

One run: arm (triggers cleared, QEMU started paused, vCPU threads pinned, ioctls injected,
stimuli set up), watch (the serial output, each stimulus's hook, until the done line, an
exit or the timeout), collect (L2 paused, KVM's counters and the hists read at one instant).
"""
from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from hil.lab.kvm import tracing
from hil.lab.agent.early import l2_machine
from hil.lab.agent.protocol import QEMU_LOG_CAP, L2Request, L2Result, VcpuIoctl
from hil.lab.devices.base import Attached
from hil.lab.errors import LabError
from hil.lab.qemu.host import qemu_version
from hil.lab.qemu.machine import Machine
from hil.lab.stimuli.base import Driver

POLL_S = 0.05
_OP_ENDED = re.compile(r"hil-probe: event=op name=(\S+)")
Notify = Callable[[dict[str, Any]], None]


class OpWatch:
    """The probe's op boundaries in its serial output: one progress event per op that ended
    (L0 shows them: hil/lab/progress.py), so a long workload is not a silent minute."""

    def __init__(self, ops: list[str], notify: Notify):
        self.ops, self.notify = ops, notify
        self.done = 0

    def on_serial(self, text: str) -> None:
        if not self.ops:
            return
        ended = _OP_ENDED.findall(text)
        # one event per op, even when several ended between two reads of the serial log
        for i in range(self.done, len(ended)):
            self.notify({"event": "progress", "task": "L2 ops", "done": i + 1, "total": len(self.ops),
                         "detail": f"{ended[i]} ended"})
        self.done = max(self.done, len(ended))


class _Vm:
    """What stimulus drivers may use of the running L2 (hil.lab.stimuli.base.L2Handle)."""

    def __init__(self, machine: Machine, trace: tracing.Tracefs):
        self.machine, self.trace = machine, trace

    @property
    def pid(self) -> int:
        assert self.machine.proc is not None
        return self.machine.proc.pid

    def command(self, cmd: str, **args: Any) -> Any:
        return self.machine.command(cmd, **args)


def _stats(machine: Machine) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for target in ("vm", "vcpu"):
        for entry in machine.command("query-stats", target=target, providers=[{"provider": "kvm"}]):
            name = "vm" if target == "vm" else entry.get("qom-path", "vcpu")
            out[name] = {s["name"]: s["value"] for s in entry.get("stats", [])}
    return out


def _read_capped(path: Path, cap: int) -> tuple[str, bool]:
    """L2's serial output, at most `cap` bytes (a runaway guest must not fill L1's memory)."""
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError:
        return "", False
    return data[:cap].decode(errors="replace"), len(data) > cap


class Parked:
    """An L2 QEMU started paused ahead of its run (L0 then snapshots L1 with it: hil/lab/run.py;
    or at L1's boot: hil/lab/agent/early.py), keyed by its command line: a run_l2 with the same
    argv adopts it instead of starting one."""

    def __init__(self, argv: list[str], machine: Machine, cleared: frozenset[tracing.HistTrigger],
                 attached: bool = True):
        self.argv, self.machine = list(argv), machine
        self.cleared = cleared      # the hist triggers cleared as it started (see L2Runner._run)
        self.attached = attached    # its monitor taken (one spawned at boot: when adopted)

    def adoptable(self, argv: list[str]) -> bool:
        return self.argv == argv and self.machine.is_running()


class L2Runner:
    _quitting: threading.Thread | None = None     # the last run's L2 QEMU quitting (quit_done)

    def __init__(self, run_dir: Path, log_dir: Path, trace: tracing.Tracefs | None = None):
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.parked: Parked | None = None
        self.trace = trace or tracing.Tracefs()
        for trig in (tracing.EXITS_ALL, tracing.PIO_PORTS, tracing.USERSPACE_EXITS, tracing.ACCEPTED_IRQS):
            self.trace.ensure(trig)
        # the dedicated-cpu series' own tracepoints, where its modules are loaded
        events = self.trace.root / "events"
        self.optional = {name: trig for name, trig in tracing.OPTIONAL.items()
                         if all((events / t.event).is_dir() for t in (trig, tracing.ONLY_WITH.get(name, trig)))}
        for trig in self.optional.values():
            self.trace.ensure(trig)

    def quit_done(self) -> None:
        """The last run's L2 QEMU has quit (it quits after its counters were read, in the
        background): waited for before another L2 starts."""
        if self._quitting is not None:
            self._quitting.join()
            self._quitting = None

    def park(self, req: L2Request) -> dict[str, Any]:
        """Start the request's L2 QEMU paused, exactly as a run would (same argv, -S, serial
        log made afresh), and keep it for the run_l2 with the same argv. A parked one of
        another argv is shut down first. Requests with devices are refused: a device is set
        up in L1 per run and its argv names what that set-up made."""
        if req.devices:
            raise LabError("an L2 with devices is not parked (its devices are attached per run)")
        self.quit_done()
        self.unpark()
        t0 = time.monotonic()
        triggers, _ = self._triggers(req)
        # cleared now, as a run clears them while its QEMU starts (the run then only checks them)
        with ThreadPoolExecutor(max_workers=len(triggers), thread_name_prefix="hist-clear") as clearing:
            cleared = [clearing.submit(self.trace.clear, trig) for trig in triggers]
            machine = self._launch(req.argv, Path(req.serial_log))
            try:
                for done in cleared:
                    done.result()
            except BaseException:
                machine.shutdown()
                raise
        self.parked = Parked(req.argv, machine, frozenset(triggers))
        return {"seconds": round(time.monotonic() - t0, 3)}

    def adopt_at_boot(self, req: L2Request, machine: Machine) -> None:
        """Keep the L2 QEMU L1's init started from L0's boot request (adopted, its monitor not yet
        attached) for the run_l2 with its argv. The hist triggers were made in this boot while
        it was paused: empty, so the run only checks them."""
        triggers, _ = self._triggers(req)
        self.parked = Parked(req.argv, machine, frozenset(triggers), attached=False)

    def unpark(self) -> None:
        parked, self.parked = self.parked, None
        if parked is not None:
            parked.machine.shutdown()

    def _launch(self, argv: list[str], serial: Path) -> Machine:
        """L2's QEMU started paused (pinning, ioctls and stimuli are set before the guest runs)."""
        serial.unlink(missing_ok=True)
        machine = l2_machine(argv, self.run_dir, self.log_dir)
        machine.launch()
        return machine

    def _adopt_or_launch(self, argv: list[str], serial: Path) -> tuple[Machine, bool]:
        """The parked L2 QEMU when its argv is this run's (its serial log, made when it started,
        is kept: nothing of the guest has run), else a fresh one (a parked one is shut down).
        Returns (machine, adopted)."""
        parked, self.parked = self.parked, None
        if parked is not None and parked.adoptable(argv):
            if not parked.attached:
                parked.machine.attach()
            return parked.machine, True
        if parked is not None:
            parked.machine.shutdown()
        return self._launch(argv, serial), False

    @staticmethod
    def _inject(machine: Machine, actions: list[VcpuIoctl]) -> list[dict[str, int]]:
        from hil.lab.kvm.inject import inject_vcpu_ioctl   # python-ptrace only when used
        assert machine.proc is not None
        threads = {c["cpu-index"]: c["thread-id"] for c in machine.command("query-cpus-fast")}
        done = []
        for act in actions:
            if act.vcpu not in threads:
                raise LabError(f"no vCPU {act.vcpu} in L2 (QEMU has {sorted(threads)})")
            rc = inject_vcpu_ioctl(machine.proc.pid, threads[act.vcpu], act.vcpu, act.request, act.arg)
            if rc < 0:
                raise LabError(f"injected ioctl {act.request:#x} on vCPU {act.vcpu} failed: errno {-rc}")
            done.append({"vcpu": act.vcpu, "request": act.request, "arg": act.arg, "result": rc})
        return done

    @staticmethod
    def _pin(machine: Machine, cpus: list[int]) -> None:
        threads = {c["cpu-index"]: c["thread-id"] for c in machine.command("query-cpus-fast")}
        for index, cpu in enumerate(cpus):
            os.sched_setaffinity(threads[index], {cpu})

    def _arm(self, machine: Machine, req: L2Request, vm: _Vm, drivers: list[Driver]) -> list[dict[str, int]]:
        """QEMU is up and paused: everything that must hold before the guest's first instruction."""
        if req.pin:
            self._pin(machine, req.pin)
        injected = self._inject(machine, req.before_start) if req.before_start else []
        for d in drivers:
            d.before_start(vm)
        machine.command("cont")
        return injected

    @staticmethod
    def _watch(machine: Machine, req: L2Request, vm: _Vm, drivers: list[Driver], deadline: float,
               ops: OpWatch) -> str:
        """Until the done line, L2's exit or the deadline: the serial output to every driver."""
        serial = Path(req.serial_log)
        pattern = re.compile(req.done_pattern) if req.done_pattern else None
        while time.monotonic() < deadline:
            text, _ = _read_capped(serial, req.serial_cap)
            # whole lines only: a line caught half-written ("name=cpui") would be read as ended
            lines = text[:text.rfind("\n") + 1]
            for d in drivers:
                d.on_serial(lines, vm)
            ops.on_serial(lines)
            if pattern and pattern.search(text):
                return "done"
            if not machine.is_running():
                return "exit"
            time.sleep(POLL_S)
        return "timeout"

    def run(self, req: L2Request, notify: Notify = lambda msg: None) -> L2Result:
        """Devices are attached first (their L2 arguments come from L1: a BDF, a tap) and
        detached after, whatever happened in between. `notify` gets progress events."""
        self.quit_done()
        attached: list[tuple[str, Attached]] = []
        try:
            for dev in req.devices:
                attached.append((dev.kind, dev.attach(self.run_dir)))
            result = self._run(req, attached, OpWatch(req.ops, notify))
        finally:
            errors = {kind: att.teardown() for kind, att in attached}
        for kind, att in attached:
            result.devices[kind]["teardown_errors"] = errors[kind]
        return result

    def _triggers(self, req: L2Request) -> tuple[list[tracing.HistTrigger], tracing.HistTrigger | None]:
        """The hist triggers a run reads (set up if need be), and among them the window's."""
        window = tracing.exits_window(*req.window) if req.window else None
        if window:
            self.trace.ensure(window)
        triggers = [tracing.EXITS_ALL, tracing.PIO_PORTS, tracing.USERSPACE_EXITS, tracing.ACCEPTED_IRQS,
                    *self.optional.values()] + ([window] if window else [])
        return triggers, window

    def _clear_unless_empty(self, trig: tracing.HistTrigger) -> None:
        """A trigger cleared when the parked L2 QEMU started: only L2 makes its events, and
        none of L2 has run since, so it is still empty; it is read to make sure (no RCU wait)
        and cleared only if it is not."""
        hist = self.trace.read(trig)
        if hist.entries or hist.hits or hist.dropped:
            self.trace.clear(trig)

    def _run(self, req: L2Request, attached: list[tuple[str, Attached]], ops: OpWatch) -> L2Result:
        triggers, window = self._triggers(req)
        argv = req.argv + [a for _, att in attached for a in att.l2_argv]
        precleared = self.parked.cleared if self.parked is not None and self.parked.adoptable(argv) else frozenset()
        # Each clear waits out an RCU grace period in L1's kernel (~40 ms under TCG): cleared all
        # at once (concurrent waits share grace periods) while L2's QEMU starts paused; all are
        # done before the guest's first instruction (see _arm's caller). Those cleared when the
        # adopted QEMU was parked are only checked.
        clearing = ThreadPoolExecutor(max_workers=len(triggers), thread_name_prefix="hist-clear")
        cleared = [clearing.submit(self._clear_unless_empty if trig in precleared else self.trace.clear, trig)
                   for trig in triggers]
        try:
            return self._run_cleared(req, attached, triggers, window, cleared, ops)
        finally:
            clearing.shutdown(wait=True)

    def _run_cleared(self, req: L2Request, attached: list[tuple[str, Attached]],
                     triggers: list[tracing.HistTrigger], window: tracing.HistTrigger | None,
                     cleared: list[Future[None]], ops: OpWatch) -> L2Result:
        serial = Path(req.serial_log)
        drivers = [s.driver() for s in req.stimuli] + [att.observer for _, att in attached]
        argv = req.argv + [a for _, att in attached for a in att.l2_argv]
        t0 = time.monotonic()
        stats: dict[str, dict[str, Any]] = {}
        stats_error = ""
        machine, adopted = self._adopt_or_launch(argv, serial)
        try:
            t_launched = time.monotonic()
            vm = _Vm(machine, self.trace)
            for done in cleared:       # paused so far: no exit has been counted yet
                done.result()
            injected = self._arm(machine, req, vm, drivers)
            t_up = time.monotonic()
            ended_by = self._watch(machine, req, vm, drivers, t0 + req.timeout, ops)
            t_done = time.monotonic()
            if ended_by == "done" and not machine.is_running():
                ended_by = "exit"     # it ended itself right after its last line (kvm-unit-tests' exit())
            # QEMU's own exit code when it ended itself; None when hil stops it below
            exitcode = machine.exitcode if ended_by == "exit" else None
            if req.after_done and machine.is_running():
                injected += self._inject(machine, req.after_done)
                time.sleep(req.settle)
            if machine.is_running():
                try:
                    # Paused, the vCPU makes no more exits: KVM's counters and the
                    # tracepoint totals then describe the same instant.
                    machine.command("stop")
                    stats = _stats(machine)   # KVM's counters exist only while the VM does
                except Exception as e:        # it exited meanwhile (a foreign kernel ending itself)
                    stats_error = f"{type(e).__name__}: {e}"
            else:
                stats_error = f"L2 QEMU had exited (code {machine.exitcode}) before its counters were read"
            t_stopped = time.monotonic()
            results = {trig: self.trace.read(trig) for trig in triggers}
            for d in drivers:
                d.finish(vm)
            stimuli = {s.kind: d.result() for s, d in zip(req.stimuli, drivers)}
            devices = {kind: {"info": att.info, "host": att.observer.result()} for kind, att in attached}
            t_read = time.monotonic()
        except BaseException:
            machine.shutdown()
            raise
        if attached:       # a device is torn down once QEMU has let it go (run() does it next)
            machine.shutdown()
        else:              # paused, its counters read: it quits while the answer goes out
            self._quitting = threading.Thread(target=machine.shutdown, name="l2-quit", daemon=True)
            self._quitting.start()
        text, truncated = _read_capped(serial, req.serial_cap)
        t_end = time.monotonic()
        qemu_log = machine.output()[-QEMU_LOG_CAP:]
        return L2Result(
            exits_all=results[tracing.EXITS_ALL].entries,
            exits_window=results[window].entries if window else [],
            pio=results[tracing.PIO_PORTS].entries,
            userspace_exits=results[tracing.USERSPACE_EXITS].entries,
            stats=stats, serial=text, exitcode=exitcode, ended_by=ended_by,
            timings={"qemu_up": t_up - t0, "qemu_launch": t_launched - t0, "workload": t_done - t_up,
                     "stop_and_stats": t_stopped - t_done, "trace_read": t_read - t_stopped,
                     "qemu_quit": t_end - t_read, "total": t_end - t0},
            qemu_version=qemu_version(req.argv[0]),
            dropped={f"{trig.event} {trig.command()}": r.dropped for trig, r in results.items() if r.dropped},
            injected=injected,
            hists={"accepted_irqs": results[tracing.ACCEPTED_IRQS].entries,
                   **{name: results[trig].entries for name, trig in self.optional.items()}},
            stimuli=stimuli, stats_error=stats_error, serial_truncated=truncated, argv=argv, devices=devices,
            qemu_log=qemu_log, parked=adopted,
        )
