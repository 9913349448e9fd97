"""The agent's answer in, a Measurement out: codes and RIPs become reason names and probe
ops, hist buckets become typed kick traces, and a run that cannot be trusted is a LabError."""
from __future__ import annotations

import re
from typing import Any

from hil.lab.agent.protocol import L2Result
from hil.lab.assets.probe import ProbeImage, parse_probe_line
from hil.lab.errors import LabError
from hil.lab.request import KICK_VECTORS
from hil.measurement import KickFinding, KickTrace, LatencyStats, NmiLanding, OpMeasurement, latency_stats
from hil.model import reason_name
from hil.scenario import Scenario

PIO_DIR = {0: "in", 1: "out"}   # kvm_pio rw field: 1 = write (out), 0 = read (in)
VCPU_MODES = {0: "outside", 1: "in-guest", 2: "exiting", 3: "reading-shadow-page-tables"}
NMI_LANDINGS = {0: "guest", 1: "entry", 2: "host", 3: "idle"}


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.splitlines()[-lines:])


def kut_status(exitcode: int | None, ended_by: str) -> int | None:
    """kvm-unit-tests' own exit code when L2 QEMU ended through isa-debug-exit ((code << 1) | 1):
    0 PASS, 77 SKIP, else FAIL. None: L2 did not end that way."""
    if ended_by != "exit" or exitcode is None or exitcode <= 0 or exitcode % 2 == 0:
        return None
    return exitcode >> 1


_KUT_LINE = re.compile(r"^(PASS|FAIL|SKIP|XFAIL|XPASS): (.*)$")
_KUT_CYCLES = re.compile(r"^([a-z][a-z0-9_]*) ([0-9]+)$")     # x86/vmexit.flat: "cpuid 141204" (cycles per exit)


def kut_report(serial: str) -> dict[str, Any]:
    """kvm-unit-tests' own report lines (PASS/FAIL/SKIP/XFAIL/XPASS: text), its SUMMARY, and
    vmexit.flat's cycles per exit ("name N" lines: TSC cycles; meaningless under TCG)."""
    lines = []
    summary = ""
    cycles: dict[str, int] = {}
    for raw in serial.splitlines():
        line = raw.strip()
        if m := _KUT_LINE.match(line):
            lines.append({"verdict": m.group(1), "text": m.group(2)})
        elif line.startswith("SUMMARY:"):
            summary = line.removeprefix("SUMMARY:").strip()
        elif m := _KUT_CYCLES.match(line):
            cycles[m.group(1)] = int(m.group(2))
    return {"lines": lines, "summary": summary, "cycles": cycles}


def check_result(result: L2Result, scenario: Scenario) -> None:
    """Raise LabError when the run cannot be trusted: the lab broke, not the kernel."""
    if result.dropped:
        where = "; ".join(f"{n} by {trig}" for trig, n in result.dropped.items())
        raise LabError(f"tracefs dropped {sum(result.dropped.values())} events: counts are incomplete ({where})")
    tail = _tail(result.serial) or "(no serial output)"
    if result.ended_by == "timeout":
        # what hil's own stimuli did says whether the guest waited for something that never came
        done = "; ".join(f"{kind}: {str(r)[:300]}" for kind, r in result.stimuli.items())
        raise LabError(f"L2 did not finish within its timeout ({scenario.topology.l2.timeout} s)"
                       + (f" (stimuli: {done})" if done else "") + f"; its serial output ends:\n{tail}")
    wl = scenario.workload
    if kut_status(result.exitcode, result.ended_by) is not None and wl.kind == "kernel":
        return    # kvm-unit-tests ended itself with its status: its counters went with its QEMU
    if result.ended_by == "exit" and (wl.kind == "probe" or wl.done_pattern):
        raise LabError(f"L2 QEMU exited (code {result.exitcode}) before "
                       f"{'the probe finished' if wl.kind == 'probe' else 'its done pattern appeared'}; "
                       f"its serial output ends:\n{tail}")
    if result.ended_by == "exit" and result.exitcode not in (0, None):
        raise LabError(f"L2 QEMU failed (exit code {result.exitcode}); its serial output ends:\n{tail}")
    if not result.stats:
        raise LabError(f"KVM's counters of L2 could not be read ({result.stats_error or 'no stats'})"
                       + ("; give the scenario a workload.done_pattern so hil pauses L2 before it ends"
                          if result.ended_by == "exit" else ""))
    failed = [i for i in result.injected if i.get("result", -1) < 0]
    if failed:
        raise LabError(f"injected ioctls failed: {failed}")


def probe_events(serial: str) -> list[dict[str, Any]]:
    return [e for e in (parse_probe_line(l) for l in serial.splitlines()) if e]


def samples_by_op(events: list[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    """op -> kind -> values, from the probe's event=samples lines (64 a line, `first` the index)."""
    out: dict[str, dict[str, list[int]]] = {}
    for e in events:
        if e.get("event") != "samples" or "name" not in e or "kind" not in e or not isinstance(e.get("v"), tuple):
            continue
        values = out.setdefault(e["name"], {}).setdefault(e["kind"], [])
        if e.get("first", len(values)) != len(values):
            raise LabError(f"probe samples of {e['name']}/{e['kind']}: line starts at {e.get('first')}, "
                           f"{len(values)} read so far (a lost serial line)")
        values.extend(e["v"])
    return out


def _intervals(values: list[int]) -> list[int]:
    return [b - a for a, b in zip(values, values[1:])]


def op_latency(samples: dict[str, list[int]], tsc_khz: int | None) -> dict[str, LatencyStats]:
    """The op's samples in ns: TSC counts through the probe's calibrated tsc_khz."""
    out: dict[str, LatencyStats] = {}
    if not tsc_khz:
        return out
    to_ns = 1e6 / tsc_khz
    series = {"lat": [v * to_ns for v in samples.get("lat", [])],
              "isr_interval": [v * to_ns for v in _intervals(samples.get("isr", []))],
              "sender_interval": [float(v) for v in _intervals(samples.get("sender", []))]}
    for kind, values in series.items():
        stats = latency_stats(values)
        if stats is not None:
            out[kind] = stats
    return out


def exits_by_op(result: L2Result, arch: str, probe: ProbeImage | None, events: list[dict[str, Any]]
                ) -> tuple[list[OpMeasurement], dict[str, int]]:
    """Window exits attributed to the op whose code holds their RIP; the rest is glue."""
    reported = {e["name"]: e for e in events if e.get("event") == "op" and "name" in e}
    per_op: dict[str, dict[str, int]] = {}
    rips: dict[str, dict[str, dict[str, int]]] = {}
    outside: dict[str, int] = {}
    for entry in result.exits_window:
        name = reason_name(arch, entry["exit_reason"])
        op = probe.op_at(entry["guest_rip"]) if probe else None
        bucket = per_op.setdefault(op, {}) if op else outside
        bucket[name] = bucket.get(name, 0) + entry["hitcount"]
        if op:
            at = rips.setdefault(op, {}).setdefault(name, {})
            at[f"{entry['guest_rip']:#x}"] = at.get(f"{entry['guest_rip']:#x}", 0) + entry["hitcount"]
    ops = []
    samples = samples_by_op(events)
    for name in (probe.op_ranges if probe else ()):
        rep = reported.get(name)
        if rep is None and name not in per_op:
            continue
        count = rep.get("count") if rep else None
        got = samples.get(name, {})
        ops.append(OpMeasurement(name, count if isinstance(count, int) else None, per_op.get(name, {}),
                                 rep.get("tsc") if rep and isinstance(rep.get("tsc"), int) else None,
                                 {k: v for k, v in (rep or {}).items() if k not in ("event", "name")},
                                 got, op_latency(got, (rep or {}).get("tsc_khz")), rips.get(name, {})))
    return ops, outside


def summed(entries: list[dict[str, int]], arch: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        n = reason_name(arch, e["exit_reason"])
        out[n] = out.get(n, 0) + e["hitcount"]
    return out


def pio_counts(entries: list[dict[str, int]]) -> dict[str, int]:
    return {f"{e['port']:#x}/{PIO_DIR.get(e['rw'], e['rw'])}": e["hitcount"] for e in entries}


def counters(stats: dict[str, dict[str, Any]]) -> dict[str, int]:
    """KVM's vCPU stats summed over vCPUs (the VM-wide ones left out)."""
    out: dict[str, int] = {}
    for target, values in stats.items():
        if target == "vm":
            continue
        for k, v in values.items():
            if isinstance(v, int) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def kick_trace(result: L2Result) -> KickTrace:
    """vCPU 0's kicks over the run: interrupts its APIC accepted on the kick vectors (any
    kernel), and with the dedicated-cpu series what each kick found (vcpu->mode, NMI sent or
    not), where each NMI landed (kick NMIs and prevent_run's own, counted separately) and how
    many landed in the window (past the request check, VMRUN ahead)."""
    hists = result.hists
    observer = result.stimuli.get("host-interrupts", {})
    trace = KickTrace(
        accepted=sum(e["hitcount"] for e in hists.get("accepted_irqs", [])
                     if e.get("apicid") == 0 and e.get("vec") in KICK_VECTORS),
        io_thread_msis=list(result.stimuli.get("io-thread-msi", {}).get("msi_results", [])),
        host_interrupts_per_op=observer.get("per_op", {}),
        immediate_exits_per_op=observer.get("immediate_exits_per_op", {}))
    if "kicks" not in hists:
        return trace
    trace.series_traced = True
    found: dict[tuple[str, bool], int] = {}
    for e in hists["kicks"]:
        if e.get("vcpu_id") == 0:
            key = (VCPU_MODES.get(e["old_mode"], str(e["old_mode"])), bool(e["nmi"]))
            found[key] = found.get(key, 0) + e["hitcount"]
    trace.found = [KickFinding(mode, nmi, n) for (mode, nmi), n in sorted(found.items())]
    landed: dict[str, list[int]] = {}
    for e in hists.get("kick_nmis", []):
        where = NMI_LANDINGS.get(e["where"], str(e["where"]))
        if where == "guest":
            trace.guest_nmis_all_vcpus += e["hitcount"]
        if e.get("vcpu_id") in (0, -1):
            row = landed.setdefault(where, [0, 0, 0, 0])
            row[0] += e["hitcount"]
            row[1] += e.get("kicks", 0)
            row[2] += e.get("self_nmis", 0)
            row[3] += e["hitcount"] if e.get("prevent_run") else 0
    trace.landed = [NmiLanding(w, *row) for w, row in sorted(landed.items())]
    windows = [e for e in hists.get("kick_windows", []) if e.get("vcpu_id") == 0]
    trace.window = sum(e["hitcount"] for e in windows)
    trace.window_pending = sum(e["hitcount"] for e in windows if e.get("pending"))
    trace.stock_kicks = {VCPU_MODES.get(e["old_mode"], str(e["old_mode"])): e["hitcount"]
                         for e in hists.get("stock_kicks", []) if e.get("vcpu_id") == 0}
    trace.relays = sum(e["hitcount"] for e in hists.get("direct_relays", []) if e.get("vcpu_id") == 0)
    trace.forwards = sum(e["hitcount"] for e in hists.get("direct_forwards", []) if e.get("vcpu_id") == 0)
    trace.exit_intinfo = [dict(e) for e in hists.get("exit_intinfo", [])]
    trace.deferred = sum(e["hitcount"] for e in hists.get("direct_deferred", []))
    retargets = [e for e in hists.get("direct_retargets", []) if e.get("vcpu_id") == 0]
    trace.retargets = sum(e["hitcount"] for e in retargets if e.get("on") and e.get("ret") == 0)
    trace.retarget_failures = sum(e["hitcount"] for e in retargets if e.get("on") and e.get("ret") != 0)
    trace.phys_eois = sum(e["hitcount"] for e in hists.get("direct_phys_eois", []) if e.get("vcpu_id") == 0)
    return trace
