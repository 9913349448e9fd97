"""Run one L2 guest under this host's KVM and measure it: exits per reason (all, and inside
the workload's RIP window), port I/O, userspace exits and KVM's own vCPU counters."""
from __future__ import annotations

import functools
import os
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
    pin: list[int] = field(default_factory=list)    # L1 CPU for each vCPU thread, in vCPU order
    # MSIs hil sends from QEMU's I/O thread once the serial shows `after`:
    # {"after": regex, "count": n, "interval": s, "address": msi address, "data": msi data}
    kicks: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "L2Request":
        w = d.get("window")
        return cls(argv=list(d["argv"]), serial_log=d["serial_log"], done_pattern=d.get("done_pattern"),
                   window=(int(w[0]), int(w[1])) if w else None, timeout=float(d.get("timeout", 180.0)),
                   after_done=list(d.get("after_done", [])), before_start=list(d.get("before_start", [])),
                   settle=float(d.get("settle", 0.5)), pin=[int(c) for c in d.get("pin", [])],
                   kicks=d.get("kicks"))


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
    hists: dict[str, list[dict[str, int]]] = field(default_factory=dict)   # accepted irqs, dedicated kicks/NMIs
    # per probe op that announces itself (event=begin): host interrupts per kind and CPU while it ran
    op_host_interrupts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    kicks_sent: list[int] = field(default_factory=list)   # KVM_SIGNAL_MSI result of each I/O-thread kick


BEGIN = re.compile(r"hil-probe: event=begin name=(\S+)")
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
        for trig in (tracing.EXITS_ALL, tracing.PIO_PORTS, tracing.USERSPACE_EXITS, tracing.ACCEPTED_IRQS):
            self.trace.ensure(trig)
        # the dedicated-cpu series' own tracepoints, where its modules are loaded
        self.optional = {name: trig for name, trig in tracing.OPTIONAL.items()
                         if (self.trace.root / "events" / trig.event).is_dir()}
        if "immediate_exit" in self._fields("kvm/kvm_entry"):
            self.optional["immediate_exits"] = tracing.IMMEDIATE_EXITS
        for trig in self.optional.values():
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

    def _fields(self, event: str) -> set[str]:
        try:
            return self.trace.fields(event)
        except OSError:
            return set()

    def _host_interrupts(self) -> dict[str, dict[str, int]]:
        """Host interrupts by kind and CPU so far, and KVM's immediate-exit IPIs by vCPU."""
        out = {name[len("host_"):]: {str(e["common_cpu"]): e["hitcount"] for e in self.trace.read(trig).entries}
               for name, trig in self.optional.items() if name.startswith("host_")}
        if "immediate_exits" in self.optional:
            out["kvm_immediate_exit_by_vcpu"] = {str(e["vcpu_id"]): e["hitcount"]
                                                 for e in self.trace.read(self.optional["immediate_exits"]).entries}
        return out

    def _host_interrupts_per_op(self, serial: str, begun: dict[str, dict[str, dict[str, int]]],
                                done: dict[str, dict[str, dict[str, int]]]) -> None:
        """Snapshot the host-interrupt hists when the probe begins an op and when it reports it:
        the difference is what hit each CPU while the op ran, and then some: the probe waits
        200 ms after `begin` (the agent polls every 50 ms), and the op's report comes after it."""
        for op in BEGIN.findall(serial):
            if op not in begun:
                begun[op] = self._host_interrupts()
        for op in begun:
            if op not in done and re.search(rf"event=op name={re.escape(op)}\b", serial):
                self._end_op(op, begun, done)

    def _end_op(self, op: str, begun: dict[str, dict[str, dict[str, int]]],
                done: dict[str, dict[str, dict[str, int]]]) -> None:
        now = self._host_interrupts()
        done[op] = {kind: {cpu: n - begun[op].get(kind, {}).get(cpu, 0) for cpu, n in cpus.items()}
                    for kind, cpus in now.items()}

    @staticmethod
    def _pin(machine: Machine, cpus: list[int]) -> None:
        threads = {c["cpu-index"]: c["thread-id"] for c in machine.command("query-cpus-fast")}
        for index, cpu in enumerate(cpus):
            os.sched_setaffinity(threads[index], {cpu})

    @staticmethod
    def _kick(machine: Machine, spec: dict[str, Any]) -> list[int]:
        """The I/O-thread kicks: KVM_SIGNAL_MSI issued by QEMU's main thread, `interval` apart."""
        from hil.lab.agent.inject import signal_msi   # python-ptrace only when used
        assert machine.proc is not None
        results = []
        for i in range(int(spec["count"])):
            time.sleep(float(spec["interval"]) if i else 0.3)   # the probe starts the op 200 ms after `begin`
            results.append(signal_msi(machine.proc.pid, int(spec["address"]), int(spec["data"])))
        return results

    def run(self, req: L2Request) -> L2Result:
        window = tracing.exits_window(*req.window) if req.window else None
        if window:
            self.trace.ensure(window)
        triggers = [tracing.EXITS_ALL, tracing.PIO_PORTS, tracing.USERSPACE_EXITS, tracing.ACCEPTED_IRQS,
                    *self.optional.values()] + ([window] if window else [])
        for trig in triggers:
            self.trace.clear(trig)
        serial = Path(req.serial_log)
        serial.unlink(missing_ok=True)
        t0 = time.monotonic()
        paused = bool(req.before_start or req.pin)
        argv = req.argv + (["-S"] if paused else [])
        machine = Machine(argv, name="l2", log_dir=self.log_dir, run_dir=self.run_dir)
        stats: dict[str, dict[str, Any]] = {}
        injected: list[dict[str, int]] = []
        kicks_sent: list[int] = []
        with machine:
            if req.pin:
                self._pin(machine, req.pin)
            if req.before_start:
                injected += self._inject(machine, req.before_start)
            if paused:
                machine.command("cont")
            t_up = time.monotonic()
            pattern = re.compile(req.done_pattern) if req.done_pattern else None
            kick_after = re.compile(req.kicks["after"]) if req.kicks else None
            ended_by = "timeout"
            begun: dict[str, dict[str, dict[str, int]]] = {}
            op_host_interrupts: dict[str, dict[str, dict[str, int]]] = {}
            while time.monotonic() - t0 < req.timeout:
                text = serial.read_text(errors="replace") if serial.exists() else ""
                self._host_interrupts_per_op(text, begun, op_host_interrupts)
                if kick_after and kick_after.search(text):
                    kick_after = None
                    kicks_sent = self._kick(machine, req.kicks or {})
                    continue
                if pattern and pattern.search(text):
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
            hists={"accepted_irqs": results[tracing.ACCEPTED_IRQS].entries,
                   **{name: results[trig].entries for name, trig in self.optional.items()}},
            kicks_sent=kicks_sent,
            op_host_interrupts=op_host_interrupts,
        )


def check_result(result: L2Result) -> None:
    """Raise LabError when the run cannot be trusted (the lab broke, not the kernel)."""
    if result.dropped:
        raise LabError(f"tracefs dropped {result.dropped} events: counts are incomplete")
    if result.ended_by == "timeout":
        raise LabError("L2 did not finish before its timeout")
