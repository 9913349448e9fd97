"""lab.run: scenario in, Measurement out. Builds (or reuses) images, picks the accelerator,
boots L1, runs the L2 workload through the agent and resolves what it measured."""
from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import hil
from hil.lab.agent.l2 import L2Result, check_result
from hil.lab.assets.cache import cache_root, digest
from hil.lab.assets.l1_image import L1Image, build_l1_image
from hil.lab.assets.probe import ProbeImage, build_probe, format_cmdline, parse_probe_line
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.kernel.abi import DEDICATED_MODES, KVM_SET_DEDICATED
from hil.lab.l1 import L1Session
from hil.lab.measurement import Measurement, OpMeasurement
from hil.lab.qemu.accel import AccelChoice, choose_accel, host_cpu_model, qemu_version
from hil.lab.qemu.argv import L2Paths, l1_argv, l2_argv
from hil.lab.repro import write_repro
from hil.model import reason_name
from hil.scenario import Scenario, Topology

PROBE_DONE = r"hil-probe: event=done"
PIO_DIR = {0: "in", 1: "out"}   # kvm_pio rw field: 1 = write (out), 0 = read (in)


@dataclass
class Prepared:
    image: L1Image
    probe: ProbeImage | None
    accel: AccelChoice
    timings: dict[str, float]


def prepare(topology: Topology, needs_probe: bool, accel_override: str | None = None) -> Prepared:
    t0 = time.monotonic()
    image = build_l1_image(topology.l1.kernel, topology.l1.series)
    t1 = time.monotonic()
    probe = build_probe(cache_root() / "probe") if needs_probe else None
    t2 = time.monotonic()
    requested = accel_override or topology.accel
    # Whether KVM boots Linux depends on host, QEMU and L1 kernel, not on our initramfs.
    kernel_key = f"{image.kernel.package}={image.kernel.version}"
    accel = choose_accel(requested, kernel_key, lambda: kvm_boot_probe(topology, image))
    t3 = time.monotonic()
    return Prepared(image, probe, accel, {"image": t1 - t0, "probe_build": t2 - t1, "accel_choice": t3 - t2})


def kvm_boot_probe(topology: Topology, image: L1Image, timeout: float = 25.0) -> tuple[bool, str]:
    """Boot L1 under KVM; it works only if the agent comes up and sees VMX or SVM."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="hil-accel-probe-") as logs:
        try:
            with L1Session(l1_builder(topology, image, "kvm"), log_dir=Path(logs), boot_timeout=timeout) as l1:
                arch = l1.info.get("arch")
                if arch not in ("svm", "vmx"):
                    return False, "L1 booted under KVM but its CPU shows no VMX/SVM (nested virtualization off in L0?)"
                return True, f"L1 booted under KVM in {l1.boot_seconds:.1f} s with {arch}"
        except LabError as e:
            return False, str(e).splitlines()[0]


def snapshot_path(topology: Topology, image: L1Image, accel: str) -> Path | None:
    """Where the idle-L1 snapshot for this exact image, L1 config and accelerator lives."""
    if not topology.l1.snapshot:
        return None
    m = re.search(r"version (\d+)\.(\d+)", qemu_version())
    if not m or (int(m.group(1)), int(m.group(2))) < (8, 2):   # 'file:' migration URIs
        return None
    key = digest({"image": image.key, "l1": asdict(topology.l1), "accel": accel, "qemu": qemu_version()})
    return cache_root() / "l1-snapshot" / f"{key}.state"


def l1_builder(topology: Topology, image: L1Image, accel: str) -> Callable[..., list[str]]:
    def build(console_log: Path, agent_socket: Path) -> list[str]:
        return l1_argv(topology.l1, accel=accel, kernel=image.kernel.vmlinuz, initrd=image.initrd,
                       console_log=console_log, agent_socket=agent_socket)
    return build


MSI_ADDRESS_VCPU0 = 0xFEE00000   # fixed delivery, physical destination APIC ID 0
KICK_VECTORS = (0x50, 0x60)      # guest/probe.c: the kicks' vectors (ipi-race: pairs A and B)


def dedicate(l2: Any) -> list[dict[str, int]]:
    """KVM_SET_DEDICATED for every vCPU, issued by hil in QEMU's vCPU threads (QEMU knows no such ioctl)."""
    if l2.dedicated == "off":
        return []
    return [{"vcpu": i, "request": KVM_SET_DEDICATED, "arg": DEDICATED_MODES[l2.dedicated]} for i in range(l2.smp)]


def l2_request(scenario: Scenario, probe: ProbeImage | None) -> tuple[dict[str, Any], bytes, bytes | None]:
    """The agent request for the scenario's workload, plus the payload (kernel, initrd)."""
    wl = scenario.workload
    paths = L2Paths()
    if wl.kind == "probe":
        assert probe is not None
        append = format_cmdline([(o.op, o.count) for o in wl.ops], hlt_timer_us=wl.hlt_timer_us,
                                race_timeout_us=wl.race_timeout_us)
        argv = l2_argv(scenario.topology.l2, append=append, paths=paths)
        req = {"argv": argv, "serial_log": paths.serial_log, "done_pattern": PROBE_DONE,
               "window": list(probe.window), "timeout": scenario.topology.l2.timeout,
               "before_start": dedicate(scenario.topology.l2), "pin": list(scenario.topology.l2.pin)}
        kicks = next((o.count for o in wl.ops if o.op == "kicks"), 0)
        if kicks:
            req["kicks"] = {"after": r"hil-probe: event=begin name=kicks", "count": kicks,
                            "interval": wl.kick_interval_ms / 1000, "address": MSI_ADDRESS_VCPU0,
                            "data": KICK_VECTORS[0]}
        return req, probe.path.read_bytes(), None
    kernel = Path(wl.kernel).read_bytes()
    initrd = Path(wl.initrd).read_bytes() if wl.initrd else None
    argv = l2_argv(scenario.topology.l2, append=wl.append, paths=paths, initrd=initrd is not None)
    req = {"argv": argv, "serial_log": paths.serial_log, "done_pattern": wl.done_pattern,
           "window": None, "timeout": scenario.topology.l2.timeout, "before_start": dedicate(scenario.topology.l2),
           "pin": list(scenario.topology.l2.pin)}
    return req, kernel, initrd


def resolve(raw: dict[str, Any], arch: str, probe: ProbeImage | None) -> dict[str, Any]:
    """Turn the agent's raw counts (codes, RIPs, ports) into named, per-op measurements."""
    events = [e for e in (parse_probe_line(l) for l in raw["serial"].splitlines()) if e]
    reported = {e["name"]: e for e in events if e.get("event") == "op"}
    per_op: dict[str, dict[str, int]] = {}
    stray: dict[str, int] = {}
    for entry in raw["exits_window"]:
        name = reason_name(arch, entry["exit_reason"])
        op = probe.op_at(entry["guest_rip"]) if probe else None
        bucket = per_op.setdefault(op, {}) if op else stray
        bucket[name] = bucket.get(name, 0) + entry["hitcount"]
    ops = []
    if probe:
        for name in probe.op_ranges:
            rep = reported.get(name)
            if rep is None and name not in per_op:
                continue
            ops.append(OpMeasurement(name, int(rep["count"]) if rep else None, per_op.get(name, {}),
                                     int(rep["tsc"]) if rep and "tsc" in rep else None,
                                     {k: v for k, v in (rep or {}).items() if k not in ("event", "name")}))
    exits_all: dict[str, int] = {}
    for e in raw["exits_all"]:
        n = reason_name(arch, e["exit_reason"])
        exits_all[n] = exits_all.get(n, 0) + e["hitcount"]
    counters: dict[str, int] = {}
    for target, stats in raw["stats"].items():
        if target == "vm":
            continue
        for k, v in stats.items():
            if isinstance(v, int):
                counters[k] = counters.get(k, 0) + v
    return {
        "ops": ops, "exits_all": exits_all, "stray": stray,
        "pio": {f"{e['port']:#x}/{PIO_DIR.get(e['rw'], e['rw'])}": e["hitcount"] for e in raw["pio"]},
        "userspace": {str(e["reason"]): e["hitcount"] for e in raw["userspace_exits"]},
        "counters": counters, "events": events,
    }


VCPU_MODES = {0: "outside", 1: "in-guest", 2: "exiting", 3: "reading-shadow-page-tables"}
NMI_LANDINGS = {0: "guest", 1: "entry", 2: "host", 3: "idle"}


def kick_trace(raw: dict[str, Any]) -> dict[str, Any]:
    """vCPU 0's kicks over the run: interrupts its APIC accepted on the kick vectors (any
    kernel), and with the dedicated-cpu series what each kick found (vcpu->mode, NMI sent or
    not), where each NMI landed (kick NMIs and prevent_run's own, counted separately) and how
    many landed in the window (past the request check, VMRUN ahead)."""
    hists = raw.get("hists") or {}
    accepted = sum(e["hitcount"] for e in hists.get("accepted_irqs", [])
                   if e.get("apicid") == 0 and e.get("vec") in KICK_VECTORS)
    out: dict[str, Any] = {"accepted": accepted, "io_thread_msis": list(raw.get("kicks_sent") or []),
                           "host_interrupts_per_op": raw.get("op_host_interrupts") or {}}
    if "kicks" in hists:
        found: dict[str, int] = {}
        for e in hists["kicks"]:
            if e.get("vcpu_id") == 0:
                key = f"{VCPU_MODES.get(e['old_mode'], e['old_mode'])}/{'nmi' if e['nmi'] else 'no-nmi'}"
                found[key] = found.get(key, 0) + e["hitcount"]
        landed: dict[str, dict[str, int]] = {}
        guest_nmis = 0      # every vCPU's: kvm_exit's hist does not tell vCPUs apart
        for e in hists.get("kick_nmis", []):
            if NMI_LANDINGS.get(e["where"]) == "guest":
                guest_nmis += e["hitcount"]
            if e.get("vcpu_id") in (0, -1):
                row = landed.setdefault(NMI_LANDINGS.get(e["where"], str(e["where"])),
                                        {"nmis": 0, "kicks": 0, "self_nmis": 0, "prevent_run": 0})
                row["nmis"] += e["hitcount"]
                row["kicks"] += e.get("kicks", 0)
                row["self_nmis"] += e.get("self_nmis", 0)
                row["prevent_run"] += e["hitcount"] if e.get("prevent_run") else 0
        windows = [e for e in hists.get("kick_windows", []) if e.get("vcpu_id") == 0]
        stock = {VCPU_MODES.get(e["old_mode"], str(e["old_mode"])): e["hitcount"]
                 for e in hists.get("stock_kicks", []) if e.get("vcpu_id") == 0}
        out.update(found=found, landed=landed, guest_nmis_all_vcpus=guest_nmis,
                   window=sum(e["hitcount"] for e in windows),
                   window_pending=sum(e["hitcount"] for e in windows if e.get("pending")), stock_kicks=stock)
    return out


def provenance(scenario: Scenario, prep: Prepared, l1: L1Session, raw: dict[str, Any],
               request: dict[str, Any]) -> dict[str, Any]:
    return {
        "hil": hil.__version__,
        "scenario": scenario.to_dict(),
        "host": {"kernel": platform.release(), "cpu": host_cpu_model(), "nproc": os.cpu_count()},
        "l0_qemu": qemu_version(),
        "accel": {"accel": prep.accel.accel, "reason": prep.accel.reason},
        "l1": {"image": prep.image.provenance(), "agent": l1.info, "argv": l1.argv,
               "start": f"restored {l1.snapshot}" if l1.restore else "booted"},
        "l2": {"argv": request["argv"], "qemu": raw.get("qemu_version", ""), "injected": raw.get("injected", []),
               "payload": ({"probe": str(prep.probe.path), "sha256": prep.probe.sha256}
                           if prep.probe else {"kernel": scenario.workload.kernel})},
        "kernel_series": scenario.topology.l1.series,
    }


def run_scenario(scenario: Scenario, out_dir: Path, *, accel: str | None = None,
                 session: L1Session | None = None, prepared: Prepared | None = None) -> Measurement:
    """One scenario on a booted L1 (given, or booted here and torn down after)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepared or prepare(scenario.topology, scenario.workload.kind == "probe", accel)
    if session is not None:
        return _run_on(session, scenario, prep, out_dir)
    t0 = time.monotonic()
    with L1Session(l1_builder(scenario.topology, prep.image, prep.accel.accel), log_dir=out_dir,
                   boot_timeout=scenario.topology.l1.boot_timeout,
                   snapshot=snapshot_path(scenario.topology, prep.image, prep.accel.accel)) as l1:
        prep.timings["l1_boot"] = time.monotonic() - t0
        return _run_on(l1, scenario, prep, out_dir)


def check_arch(l1: L1Session, scenario: Scenario) -> str:
    arch = l1.info.get("arch", "none")
    if arch not in ("svm", "vmx"):
        raise CapabilityMissing(f"L1 has no VMX/SVM (cpu {l1.info.get('cpu_model')!r}): cannot run KVM inside it")
    if scenario.arch not in ("auto", arch):
        raise CapabilityMissing(f"scenario needs {scenario.arch} but L1 has {arch}")
    if not l1.info.get("tracefs"):
        raise CapabilityMissing("L1 has no kvm tracepoints in tracefs")
    return arch


def _run_on(l1: L1Session, scenario: Scenario, prep: Prepared, out_dir: Path) -> Measurement:
    arch = check_arch(l1, scenario)
    request, kernel, initrd = l2_request(scenario, prep.probe)
    paths = L2Paths()
    write_repro(out_dir, l1, request, {paths.kernel: kernel, **({paths.initrd: initrd} if initrd else {})})
    t0 = time.monotonic()
    l1.put_file(paths.kernel, kernel)
    if initrd is not None:
        l1.put_file(paths.initrd, initrd)
    t1 = time.monotonic()
    raw = l1.request("run_l2", request, timeout=float(request["timeout"]) + 60.0)
    t2 = time.monotonic()
    (out_dir / "l2-serial.log").write_text(raw["serial"])
    check_result(L2Result(**raw))
    r = resolve(raw, arch, prep.probe)
    timings = dict(prep.timings, payload_upload=t1 - t0, l2_run=t2 - t1, **{f"l2_{k}": v for k, v in raw["timings"].items()})
    return Measurement(
        arch=arch, ops=r["ops"], exits_all=r["exits_all"], exits_window_unattributed=r["stray"],
        pio=r["pio"], userspace_exits=r["userspace"], counters=r["counters"], probe_events=r["events"],
        ended_by=raw["ended_by"], provenance=provenance(scenario, prep, l1, raw, request), timings=timings,
        kick_trace=kick_trace(raw),
        logs={"l1_console": str(l1.console_log), "l2_serial": str(out_dir / "l2-serial.log"),
              "repro": str(out_dir / "repro.sh")},
    )
