"""lab.run: the orchestration of one scenario on the lab. Builds (or reuses) images, picks
the accelerator, boots or restores L1, uploads the payload, has the agent run L2 and reads
back a Measurement (hil/lab/request.py builds the request, hil/lab/results.py reads it)."""
from __future__ import annotations

import gzip
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hil
from hil.lab.agent.early import BOOT_ARGV, BOOT_PAYLOAD, BOOT_REQUEST, PAYLOAD_DIR, boot_argv
from hil.lab.agent.protocol import L2Request, L2Result
from hil.lab.assets.cache import cache_root, digest
from hil.lab.assets.l1_image import L1Image, build_l1_image, kernel_assets
from hil.lab.assets.probe import ProbeImage, cached_probe
from hil.lab import health
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.l1 import AgentError, L1Session, Publishing
from hil.lab.accel import AccelChoice, choose_accel, kvm_device_usable
from hil.lab.qemu.argv import L2Paths, l1_argv
from hil.lab.qemu.machine import private_dir
from hil.lab.qemu.host import host_cpu_flags, host_cpu_model, version_tuple
from hil.lab.l0 import qemu_version
from hil.lab.repro import write_repro
from hil.lab.request import Payload, build_request, device_specs
from hil.lab.results import (check_result, counters, exits_by_op, kick_trace, kut_report, kut_status, pio_counts,
                             probe_events, summed)
from hil.measurement import Measurement
from hil.scenario import Scenario, Topology

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    image: L1Image
    probe: ProbeImage | None
    accel: AccelChoice
    timings: dict[str, float]


def expected_archs(topology: Topology, accel_override: str | None = None) -> tuple[str, ...]:
    """The architectures L1 may have, known before anything is built: TCG emulates SVM only;
    under KVM, L1 sees the host's VMX or SVM. Used to predict before booting."""
    requested = accel_override or topology.accel
    host = tuple(a for a, flag in (("vmx", "vmx"), ("svm", "svm")) if flag in host_cpu_flags())
    if requested == "tcg" or not kvm_device_usable()[0]:
        return ("svm",)
    if requested == "kvm":
        return host or ("svm", "vmx")
    return tuple(dict.fromkeys(("svm", *host)))   # auto: TCG unless a boot probe shows KVM works


def prepare(topology: Topology, needs_probe: bool, accel_override: str | None = None) -> Prepared:
    t0 = time.monotonic()
    log.info("L1 image: kernel %s%s", topology.l1.kernel, f", series {topology.l1.series}" if topology.l1.series else "")
    kernel = kernel_assets(topology.l1.kernel)
    if topology.l1.series:      # a series build is minutes of silent make when not cached
        log.info("series %s: build (make; its log is kept in the cache) or reuse", topology.l1.series)
    series = None
    if topology.l1.series:
        from hil.lab.kernel import build_series    # kbuild's machinery only when a series is asked for
        series = build_series(topology.l1.series, kernel)
    if series is not None:
        log.info("series %s: %s after %.0f s", series.series, "cached" if series.cached else "built",
                 time.monotonic() - t0)
    image = build_l1_image(kernel, series)
    t1 = time.monotonic()
    log.info("L1 image ready after %.0f s", t1 - t0)
    probe = cached_probe() if needs_probe else None
    t2 = time.monotonic()
    requested = accel_override or topology.accel
    # Whether KVM boots Linux depends on host, QEMU and L1 kernel, not on our initramfs.
    kernel_key = f"{image.kernel.package}={image.kernel.version}"
    accel = choose_accel(requested, kernel_key, lambda: kvm_boot_probe(topology, image))
    log.info("accelerator %s (%s)", accel.accel, accel.reason)
    t3 = time.monotonic()
    return Prepared(image, probe, accel, {"image": t1 - t0, "probe_build": t2 - t1, "accel_choice": t3 - t2})


def kvm_boot_probe(topology: Topology, image: L1Image, timeout: float = 25.0) -> tuple[bool, str]:
    """Boot L1 under KVM; it works only if the agent comes up and sees VMX or SVM."""
    logs = private_dir("hil-accel-probe-")     # swept at start-up if hil is killed meanwhile
    try:
        try:
            with L1Session(l1_builder(topology, image, "kvm"), log_dir=logs, boot_timeout=timeout) as l1:
                arch = l1.info.get("arch")
                if arch not in ("svm", "vmx"):
                    return False, "L1 booted under KVM but its CPU shows no VMX/SVM (nested virtualization off in L0?)"
                return True, f"L1 booted under KVM in {l1.boot_seconds:.1f} s with {arch}"
        except LabError as e:
            return False, str(e).splitlines()[0]
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def snapshot_path(topology: Topology, image: L1Image, accel: str) -> Path | None:
    """Where the idle-L1 snapshot for this exact image, L1 config and accelerator lives."""
    if not topology.l1.snapshot or not all(d.l1_snapshot_safe() for d in device_specs(topology.l2)):
        return None
    version = version_tuple(qemu_version())
    if version is None or version < (8, 2):   # 'file:' migration URIs
        return None
    l1 = {k: v for k, v in asdict(topology.l1).items() if k != "park_l2"}     # the same idle L1 either way
    key = digest({"image": image.key, "l1": l1, "accel": accel, "qemu": qemu_version(),
                  **({"l0_devices": l0_device_args(topology)} if topology.l2.devices else {})})
    return cache_root() / "l1-snapshot" / f"{key}.state"


PARKED_KEPT = 24       # parked snapshots (~330 MB each), least recently used pruned: both tiers park ~20


def parked_snapshot_path(topology: Topology, image: L1Image, accel: str, request: L2Request,
                         payload: Payload) -> Path | None:
    """Where the snapshot of this idle L1 with this request's L2 QEMU parked in it (started
    paused, its payload loaded) lives: keyed by the idle snapshot's key, the L2 command line
    and the payload's bytes. None when it is not made: no idle snapshot, the switch off, or
    L2 devices (attached in L1 per run, not part of a parked L2)."""
    idle = snapshot_path(topology, image, accel)
    if idle is None or not topology.l1.park_l2 or request.devices:
        return None
    key = digest({"idle": idle.stem, "argv": request.argv, "payload": payload.sha256()})
    return cache_root() / "l1-parked" / f"{key}.state"


def parked_snapshot_for(scenario: Scenario, prep: Prepared) -> Path | None:
    """parked_snapshot_path for the scenario's own request and payload."""
    request, payload = build_request(scenario, prep.probe)
    return parked_snapshot_path(scenario.topology, prep.image, prep.accel.accel, request, payload)


def l0_device_args(topology: Topology) -> dict[str, list[str]]:
    """What L2's devices need of L0: -machine options, QEMU devices, L1 command line words."""
    specs = device_specs(topology.l2)
    return {"machine_options": list(dict.fromkeys(o for d in specs for o in d.l0_machine_options())),
            "devices": [a for d in specs for a in d.l0_argv()],
            "append": list(dict.fromkeys(w for d in specs for w in d.l1_append()))}


def l1_builder(topology: Topology, image: L1Image, accel: str) -> Callable[..., list[str]]:
    dev = l0_device_args(topology)

    def build(console_log: Path, agent_socket: Path) -> list[str]:
        return l1_argv(topology.l1, accel=accel, kernel=image.kernel.vmlinuz, initrd=image.initrd,
                       console_log=console_log, agent_socket=agent_socket, extra_append=dev["append"],
                       machine_options=dev["machine_options"], devices=dev["devices"])
    return build


def open_l1(topology: Topology, prep: Prepared, log_dir: Path, parked: Path | None = None,
            fw_cfg: dict[str, bytes] | None = None) -> L1Session:
    """An L1 session for the topology (not started: use it as a context manager or start()):
    restored from the parked snapshot when it exists, else from the idle one, else booted
    (with fw_cfg: boot_l2_fw_cfg's files)."""
    snapshot = parked if parked is not None and parked.exists() else snapshot_path(topology, prep.image,
                                                                                 prep.accel.accel)
    return L1Session(l1_builder(topology, prep.image, prep.accel.accel), log_dir=log_dir,
                     boot_timeout=topology.l1.boot_timeout, snapshot=snapshot, fw_cfg=fw_cfg)


def payload_files(payload: Payload) -> dict[str, bytes]:
    """Where the payload's files go in L1 (the L2 argv names these paths)."""
    paths = L2Paths()
    return {paths.kernel: payload.kernel, **({paths.initrd: payload.initrd} if payload.initrd else {})}


#: fw_cfg's sysfs files are read through port I/O in L1: a payload larger than this is uploaded
BOOT_PAYLOAD_MAX = 4 << 20


def boot_l2_fw_cfg(request: L2Request, payload: Payload) -> dict[str, bytes]:
    """What L0 puts into a booting L1's fw_cfg so that its init starts this request's L2 QEMU
    (paused) as soon as KVM is loaded, and the agent adopts it (hil/lab/agent/early.py): the
    request, the command line (a word per line) and the payload. Empty, so that the run uploads
    and starts L2 itself, for L2 devices (set up per run), a large payload, a payload outside
    the payload directory or a word with a newline."""
    files = payload_files(payload)
    argv = boot_argv(request.argv)
    if (request.devices or sum(len(d) for d in files.values()) > BOOT_PAYLOAD_MAX
            or any(Path(path).parent != PAYLOAD_DIR for path in files) or any("\n" in word for word in argv)):
        return {}
    # gzip'd: a fw_cfg file read from sysfs costs L1 a port read per byte, and every 4 KB chunk
    # reads its whole offset again (the 113 KB probe: 0.22 s under TCG, 17 KB gzip'd: ~0.01 s)
    return {BOOT_REQUEST: json.dumps(request.to_json()).encode(),
            BOOT_ARGV: "".join(word + "\n" for word in argv).encode(),
            **{f"{BOOT_PAYLOAD}/{Path(path).name}": gzip.compress(data, mtime=0) for path, data in files.items()}}


def check_arch(l1: L1Session, scenario: Scenario) -> str:
    arch = l1.info.get("arch", "none")
    if arch not in ("svm", "vmx"):
        raise CapabilityMissing(f"L1 has no VMX/SVM (cpu {l1.info.get('cpu_model')!r}): cannot run KVM inside it")
    if scenario.arch not in ("auto", arch):
        raise CapabilityMissing(f"scenario needs {scenario.arch} but L1 has {arch}")
    if not l1.info.get("tracefs"):
        if l1.info.get("kvm_modules_missing"):
            # the kernel under test: a series whose modules do not load is broken, not missing
            raise LabError(f"L1's kvm modules did not load: {', '.join(l1.info['kvm_modules_missing'])} "
                           f"(see the L1 console log)")
        raise CapabilityMissing("L1 has no kvm tracepoints in tracefs")
    return arch


def provenance(scenario: Scenario, prep: Prepared, l1: L1Session, result: L2Result,
               request: L2Request, parked_saved: Path | None = None, l2_started_at_boot: bool = False) -> dict[str, Any]:
    return {
        "hil": hil.__version__,
        "scenario": scenario.to_dict(),
        "origins": scenario.origins,
        "host": {"kernel": platform.release(), "cpu": host_cpu_model(), "nproc": os.cpu_count()},
        "l0_qemu": qemu_version(),
        "accel": {"accel": prep.accel.accel, "reason": prep.accel.reason},
        # bare metal (hil run --host): no image; the kernel under test is this machine's own
        "l1": {"image": prep.image.provenance() if prep.image else
               {"machine": "this machine (hil run --host)", "kernel_release": l1.info.get("kernel", "")},
               "agent": l1.info, "argv": l1.argv,
               "start": f"restored {l1.snapshot}" if l1.restore else "booted",
               # this run parked its L2 QEMU and saved L1 so: later runs restore that snapshot
               **({"parked_snapshot": f"saved {parked_saved}"} if parked_saved else {}),
               "topology_extends": list(scenario.topology.extends)},
        "l2": {"argv": result.argv or request.argv, "qemu": result.qemu_version, "injected": result.injected,
               # started paused before the run (park_l2, or by L1's init at boot), not by it;
               # nothing of L2 ran before `cont`
               "qemu_start": ("at L1's boot" if l2_started_at_boot else "parked") if result.parked else "at the run",
               "devices": {k: v.get("info", {}) for k, v in result.devices.items()},
               "payload": ({"probe": str(prep.probe.path), "sha256": prep.probe.sha256}
                           if prep.probe else {"kernel": scenario.workload.kernel})},
        "kernel_series": scenario.topology.l1.series,
    }


def boot_request_for(scenario: Scenario, prep: Prepared) -> tuple[L2Request, dict[str, bytes]] | None:
    """For an L1 that will boot (no snapshot is made for its topology): the scenario's request
    and the fw_cfg files with which L1's init starts its L2 QEMU for the agent. None when L1
    restores or saves a snapshot (that L1 must be idle) or boot_l2_fw_cfg declines."""
    if snapshot_path(scenario.topology, prep.image, prep.accel.accel) is not None:
        return None
    request, payload = build_request(scenario, prep.probe)
    fw_cfg = boot_l2_fw_cfg(request, payload)
    return (request, fw_cfg) if fw_cfg else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _l1_health(l1: L1Session, scenario: Scenario, result: L2Result, console_start: int) -> dict[str, Any]:
    """After a direct-mode run: does the agent still answer, did L1's console report a stall,
    a CSD-lock wait or a leaked vector during the run, and what did the leak detector count."""
    try:
        l1.request("hello", timeout=30.0)
        answers, error = True, ""
    except LabError as e:
        answers, error = False, str(e)
    isr = None
    pin = scenario.topology.l2.pin
    if pin:    # L0's view of L1's APIC on the direct CPU: a directly delivered vector left in service
        try:
            isr = health.isr_in_service(str(l1.machine.command("human-monitor-command",
                                                                 **{"command-line": f"info lapic {pin[0]}"})))
        except Exception as e:      # a monitor that cannot say is no verdict on L1
            log.debug("info lapic: %s", e)
    tick = health.tick_kept(result.hists, pin[0]) if pin and "tick_stops" in result.hists else None
    return health.health(answers, error, health.console_problems(l1.console_log, console_start),
                         health.leaks(result.hists), isr, tick)


def _fetch_l1_logs(l1: L1Session, out_dir: Path) -> None:
    """After a failed L2 run, bring L1's run logs (L2 QEMU's own output) home, best effort."""
    try:
        logs = l1.request("logs", timeout=30.0)
    except LabError as e:
        log.debug("L1 logs not fetched: %s", e)
        return
    for name, text in logs.items() if isinstance(logs, dict) else ():
        if isinstance(name, str) and isinstance(text, str) and name.startswith("l2-") and name.endswith(".log") and "/" not in name:
            (out_dir / name).write_text(text)


def _cpu_jiffies(pid: int | None) -> tuple[int, int]:
    """(busy jiffies of all L0 CPUs, steal included; the L1 QEMU's own), now. (0, 0) when
    /proc cannot tell (not Linux): then no other work is measured."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = 0
        if pid is not None:
            stat = Path(f"/proc/{pid}/stat").read_text()
            f = stat[stat.rindex(")") + 2:].split()
            own = int(f[11]) + int(f[12])        # utime + stime: every thread of the process
        return sum(v) - v[3] - v[4], own          # less idle and iowait
    except (OSError, ValueError, IndexError):
        return 0, 0


def _other_cpu(before: tuple[int, int], after: tuple[int, int], seconds: float) -> float:
    """The share of L0's CPU time that work other than the lab's L1 QEMU took meanwhile
    (0..1): what can take a CPU away from the vCPU threads whose timings the probe records."""
    ticks = os.sysconf("SC_CLK_TCK") * seconds * (os.cpu_count() or 1)
    other = (after[0] - before[0]) - (after[1] - before[1])
    return round(max(0.0, other / ticks), 3) if ticks > 0 and before != (0, 0) else 0.0


def _park(l1: L1Session, request: L2Request, parked: Path) -> Publishing | None:
    """L2's QEMU started paused in L1 (park_l2), then L1 saved to the parked snapshot, its
    publication left to a thread. A shortcut only: a failure is logged, the run goes on (an
    L2 that cannot start fails in run_l2 with its log)."""
    t0 = time.monotonic()
    try:
        l1.request("park_l2", request.to_json(), timeout=request.timeout)
    except AgentError as e:
        log.warning("L1: L2 QEMU not parked (%s)", str(e).splitlines()[0])
        return None
    t1 = time.monotonic()
    log.info("L1: saving a snapshot with L2's QEMU parked for later runs")
    try:
        publishing = l1.save_snapshot_behind(parked, PARKED_KEPT)
    except (LabError, OSError) as e:
        if not l1.machine.is_running():
            raise
        log.warning("L1: no parked snapshot saved (%s); this run goes on", str(e).splitlines()[0])
        return None
    log.debug("L2 QEMU parked in %.3f s, L1 stopped and migrated in %.3f s", t1 - t0, time.monotonic() - t1)
    return publishing


def run_on(l1: L1Session, scenario: Scenario, prep: Prepared, out_dir: Path, parked: Path | None = None,
           boot_request: L2Request | None = None) -> Measurement:
    """The scenario's L2 run on a started L1. With `parked` (a parked snapshot's path, for an L1
    fresh from its start): L1 restored from it already holds the payload and L2's QEMU, run_l2
    adopts that; otherwise this run parks its L2 QEMU and saves that snapshot first. With
    `boot_request` (what L1 booted with in its fw_cfg): its init started that L2 QEMU at boot
    unless its ready event says it could not."""
    arch = check_arch(l1, scenario)
    request, payload = build_request(scenario, prep.probe)
    uploads = payload_files(payload)
    if l1.boot_argv:                       # --host: nothing boots, nothing to reproduce at L1
        write_repro(out_dir, l1, request.to_json(), uploads)
    console_start = _size(l1.console_log)
    from_parked = parked is not None and l1.restore and l1.snapshot == parked
    boot_l2 = l1.info.get("boot_l2") or {}
    at_boot = boot_request is not None and boot_request.to_json() == request.to_json() and bool(boot_l2.get("started"))
    if boot_request is not None and not at_boot:
        log.info("L1: L2 QEMU not started at boot (%s); uploading", boot_l2.get("error") or "no fw_cfg request seen")
    t0 = time.monotonic()
    for path, data in uploads.items() if not (from_parked or at_boot) else ():   # already in L1
        l1.put_file(path, data)
    t1 = time.monotonic()
    publishing = _park(l1, request, parked) if parked is not None and not from_parked else None
    t_parked = time.monotonic()
    log.info("L2: %s on %s", scenario.name, arch)
    load_before = os.getloadavg()[0]
    proc = getattr(getattr(l1, "machine", None), "proc", None)
    cpu_before = _cpu_jiffies(proc.pid if proc is not None else None)
    try:
        raw = l1.request("run_l2", request.to_json(), timeout=request.timeout + 60.0)
    except AgentError:
        _fetch_l1_logs(l1, out_dir)
        raise
    finally:
        saved = publishing.join() if publishing is not None else False
    t2 = time.monotonic()
    host_load = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2), "nproc": os.cpu_count(),
                 "other_cpu": _other_cpu(cpu_before, _cpu_jiffies(proc.pid if proc is not None else None), t2 - t_parked)}
    try:
        result = L2Result.from_json(raw)
    except (TypeError, ValueError) as e:
        raise LabError(f"the L1 agent's answer is not an L2 result: {e}") from e
    (out_dir / "l2-serial.log").write_text(result.serial)
    (out_dir / "l2-qemu.log").write_text(result.qemu_log)
    l1_health = _l1_health(l1, scenario, result, console_start) if scenario.topology.l2.dedicated == "direct" else None
    check_result(result, scenario)
    events = probe_events(result.serial)
    ops, outside = exits_by_op(result, arch, prep.probe, events)
    timings = dict(prep.timings, payload_upload=t1 - t0, l2_run=t2 - t_parked,
                   **({"park_and_save": t_parked - t1, "parked_publish": publishing.seconds} if publishing else {}),
                   **{f"l2_{k}": v for k, v in result.timings.items()})
    return Measurement(
        arch=arch, ops=ops, exits_all=summed(result.exits_all, arch), exits_outside_ops=outside,
        pio=pio_counts(result.pio),
        userspace_exits={str(e["reason"]): e["hitcount"] for e in result.userspace_exits},
        counters=counters(result.stats), probe_events=events, ended_by=result.ended_by,
        provenance={**provenance(scenario, prep, l1, result, request, parked if saved else None, at_boot),
                    "host_load": host_load}, timings=timings,
        kick_trace=kick_trace(result), l2_exitcode=result.exitcode, devices=result.devices,
        frames={k: v for k, v in result.stimuli.items() if k in ("frame-sender", "frame-counter")},
        l1_health=l1_health,
        payload_report=({**kut_report(result.serial), "status": kut_status(result.exitcode, result.ended_by)}
                        if scenario.workload.kind == "kernel" else {}),
        logs={"l1_console": str(l1.console_log), "l2_serial": str(out_dir / "l2-serial.log"),
              "l2_qemu": str(out_dir / "l2-qemu.log"),
              "repro": str(out_dir / "repro.sh")},
    )
