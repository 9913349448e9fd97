"""Run one L2 guest under this host's KVM and measure it: exits per reason (all, and inside
the workload's RIP window), port I/O, userspace exits and KVM's own vCPU counters."""
from __future__ import annotations

import functools
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.lab.agent import tracing
from hil.lab.errors import LabError
from hil.lab.qemu.machine import Machine


@dataclass
class L2Request:
    argv: list[str]                      # full L2 QEMU command line (no monitor; Machine adds it)
    serial_log: str                      # path the argv writes L2's serial console to
    done_pattern: str | None             # regex on the serial log that ends the run
    window: tuple[int, int] | None       # workload RIP window, or None for a foreign payload
    timeout: float = 180.0
    # ioctls to make a vCPU thread issue once the workload is done: {"vcpu", "request", "arg"}
    after_done: list[dict[str, int]] = field(default_factory=list)
    # ioctls a vCPU thread issues before the guest runs (QEMU starts paused, -S)
    before_start: list[dict[str, int]] = field(default_factory=list)
    settle: float = 0.5                  # seconds to let the guest react to them

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "L2Request":
        w = d.get("window")
        return cls(argv=list(d["argv"]), serial_log=d["serial_log"], done_pattern=d.get("done_pattern"),
                   window=(int(w[0]), int(w[1])) if w else None, timeout=float(d.get("timeout", 180.0)),
                   after_done=list(d.get("after_done", [])), before_start=list(d.get("before_start", [])),
                   settle=float(d.get("settle", 0.5)))


@dataclass
class L2Result:
    exits_all: list[dict[str, int]]
    exits_window: list[dict[str, int]]
    pio: list[dict[str, int]]
    userspace_exits: list[dict[str, int]]
    stats: dict[str, dict[str, Any]]     # qom path (or "vm") -> stat name -> value
    serial: str
    exitcode: int | None
    ended_by: str                        # "done" | "exit" | "timeout"
    timings: dict[str, float] = field(default_factory=dict)
    qemu_version: str = ""
    dropped: int = 0
    injected: list[dict[str, int]] = field(default_factory=list)   # each after_done ioctl and its result


VERSION_FILE = Path("/etc/hil/qemu-version")   # written by the image build: same binary


@functools.lru_cache(maxsize=None)
def qemu_version(binary: str) -> str:
    # Starting QEMU just to ask its version costs ~0.5 s in a TCG-emulated L1.
    if binary == "/usr/bin/qemu-system-x86_64" and VERSION_FILE.exists():
        return VERSION_FILE.read_text().strip()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def _stats(machine: Machine) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for target in ("vm", "vcpu"):
        for entry in machine.command("query-stats", target=target, providers=[{"provider": "kvm"}]):
            name = "vm" if target == "vm" else entry.get("qom-path", "vcpu")
            out[name] = {s["name"]: s["value"] for s in entry.get("stats", [])}
    return out


class L2Runner:
    def __init__(self, run_dir: Path, log_dir: Path, trace: tracing.Tracefs | None = None):
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.trace = trace or tracing.Tracefs()
        for trig in (tracing.EXITS_ALL, tracing.PIO_PORTS, tracing.USERSPACE_EXITS):
            self.trace.ensure(trig)

    @staticmethod
    def _inject(machine: Machine, actions: list[dict[str, int]]) -> list[dict[str, int]]:
        from hil.lab.agent.inject import inject_vcpu_ioctl   # python-ptrace only when used
        assert machine.proc is not None
        threads = {c["cpu-index"]: c["thread-id"] for c in machine.command("query-cpus-fast")}
        done = []
        for act in actions:
            index = act.get("vcpu", 0)
            rc = inject_vcpu_ioctl(machine.proc.pid, threads[index], index, act["request"], act.get("arg", 0))
            if rc < 0:
                raise LabError(f"injected ioctl {act['request']:#x} on vCPU {index} failed: errno {-rc}")
            done.append({**act, "result": rc})
        return done

    def run(self, req: L2Request) -> L2Result:
        window = tracing.exits_window(*req.window) if req.window else None
        if window:
            self.trace.ensure(window)
        triggers = [tracing.EXITS_ALL, tracing.PIO_PORTS, tracing.USERSPACE_EXITS] + ([window] if window else [])
        for trig in triggers:
            self.trace.clear(trig)
        serial = Path(req.serial_log)
        serial.unlink(missing_ok=True)
        t0 = time.monotonic()
        argv = req.argv + (["-S"] if req.before_start else [])
        machine = Machine(argv, name="l2", log_dir=self.log_dir, run_dir=self.run_dir)
        stats: dict[str, dict[str, Any]] = {}
        injected: list[dict[str, int]] = []
        with machine:
            if req.before_start:
                injected += self._inject(machine, req.before_start)
                machine.command("cont")
            t_up = time.monotonic()
            pattern = re.compile(req.done_pattern) if req.done_pattern else None
            ended_by = "timeout"
            while time.monotonic() - t0 < req.timeout:
                if pattern and serial.exists() and pattern.search(serial.read_text(errors="replace")):
                    ended_by = "done"
                    break
                if not machine.is_running():
                    ended_by = "exit"
                    break
                time.sleep(0.05)
            t_done = time.monotonic()
            if req.after_done and machine.is_running():
                injected += self._inject(machine, req.after_done)
                time.sleep(req.settle)
            if machine.is_running():
                try:
                    # Paused, the vCPU makes no more exits: KVM's counters and the
                    # tracepoint totals then describe the same instant.
                    machine.command("stop")
                    stats = _stats(machine)   # KVM's counters exist only while the VM does
                except Exception:
                    stats = {}                # it exited meanwhile (a foreign kernel ending itself)
            results = {trig: self.trace.read(trig) for trig in triggers}
        exitcode = machine.exitcode
        t_end = time.monotonic()
        return L2Result(
            exits_all=results[tracing.EXITS_ALL].entries,
            exits_window=results[window].entries if window else [],
            pio=results[tracing.PIO_PORTS].entries,
            userspace_exits=results[tracing.USERSPACE_EXITS].entries,
            stats=stats,
            serial=serial.read_text(errors="replace") if serial.exists() else "",
            exitcode=exitcode,
            ended_by=ended_by,
            timings={"qemu_up": t_up - t0, "workload": t_done - t_up, "total": t_end - t0},
            qemu_version=qemu_version(req.argv[0]),
            dropped=sum(r.dropped for r in results.values()),
            injected=injected,
        )


def check_result(result: L2Result) -> None:
    """Raise LabError when the run cannot be trusted (the lab broke, not the kernel)."""
    if result.dropped:
        raise LabError(f"tracefs dropped {result.dropped} events: counts are incomplete")
    if result.ended_by == "timeout":
        raise LabError("L2 did not finish before its timeout")
