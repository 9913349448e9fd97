"""KVM exit accounting with tracefs hist triggers: the kernel aggregates, we read totals.

Triggers are registered once per boot and reset with ':clear' (registering and removing
them repeatedly hung L1 under multi-threaded TCG); a window trigger filters kvm_exit by the
guest RIP so that only the workload's own instructions are counted.

Maps are keyed by CPU too where there is room, and read summed over CPUs: tracing_map drops
an event whose new key another CPU is still inserting once it has spun map_size times
(tracing_map.c, __tracing_map_insert), and under TCG L0 can deschedule the inserting L1 vCPU in
that window. Two L2 vCPUs stopped by one QMP `stop` both made a first KVM_EXIT_INTR: 4 of 40
direct-timer runs lost one userspace exit that way, 0 of 281 once keyed by CPU (2026-12-02).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
CPU = "common_cpu"      # the hist key of the CPU an event fired on
KEYS_MAX = 3            # a hist map's keys at most (tracing_map.h)


@dataclass(frozen=True)
class HistTrigger:
    event: str                     # e.g. "kvm/kvm_exit"
    keys: tuple[str, ...]
    filter: str = ""
    size: int = 2048
    vals: tuple[str, ...] = ()     # fields summed per bucket besides hitcount

    @property
    def map_keys(self) -> tuple[str, ...]:
        """The kernel map's keys: `keys` after common_cpu, unless it is one of them or there is
        no room (TRACING_MAP_KEYS_MAX). The 3-key triggers name the vCPU and fire on its thread
        or CPU, or on QEMU's one thread that sets up a device (retargets); only the kicks' (two
        CPUs kicking one vCPU, each kick the first of its kind in the run) can still race."""
        return self.keys if CPU in self.keys or len(self.keys) >= KEYS_MAX else (CPU,) + self.keys

    @property
    def spec(self) -> str:
        vals = f":vals={','.join(('hitcount',) + self.vals)}" if self.vals else ""
        return f"hist:keys={','.join(self.map_keys)}{vals}:size={self.size}"

    def command(self, suffix: str = "") -> str:
        return self.spec + suffix + (f" if {self.filter}" if self.filter else "")

    def matches_info(self, info: str) -> bool:
        # The kernel prints 'hist:keys=a,b:vals=hitcount:sort=hitcount:size=N if FILTER [active]'.
        m = re.match(r"hist:keys=([^:\s]+)", info)
        if not m or tuple(m.group(1).split(",")) != self.map_keys:
            return False
        return (" if " in info) == bool(self.filter) and (not self.filter or self.filter in info)


@dataclass(frozen=True)
class HistResult:
    entries: list[dict[str, int]]  # one per bucket: key fields plus "hitcount"
    hits: int
    dropped: int


class Tracefs:
    def __init__(self, root: Path = TRACEFS):
        self.root = root
        self.registered: list[HistTrigger] = []

    def available(self) -> bool:
        return (self.root / "events/kvm/kvm_exit/trigger").exists()

    def fields(self, event: str) -> set[str]:
        text = (self.root / "events" / event / "format").read_text()
        return set(re.findall(r"field:[^;]*?(\w+)(?:\[\d*\])?;", text))

    def ensure(self, trig: HistTrigger) -> None:
        if trig in self.registered:
            return
        try:
            self._write(trig.event, trig.command())
        except FileExistsError:
            # the same trigger from an earlier agent on this kernel (a second `hil run --host`
            # on a lab box: triggers outlive the process); every run clears it before use
            pass
        self.registered.append(trig)

    def clear(self, trig: HistTrigger) -> None:
        self._write(trig.event, trig.command(":clear"))

    def read(self, trig: HistTrigger) -> HistResult:
        text = (self.root / "events" / trig.event / "hist").read_text()
        for section in text.split("# event histogram")[1:]:
            info = re.search(r"# trigger info: (.*)", section)
            if info and trig.matches_info(info.group(1)):
                hist = parse_hist(section)
                return hist if trig.map_keys == trig.keys else summed_over_cpus(hist, trig.keys)
        raise RuntimeError(f"hist trigger {trig.command()} not found in {trig.event}/hist")

    def _write(self, event: str, command: str) -> None:
        with open(self.root / "events" / event / "trigger", "a") as f:
            f.write(command + "\n")


def _value(text: str) -> int | str:
    try:
        return int(text, 0)
    except ValueError:
        return text            # a string key (comm)


def parse_hist(section: str) -> HistResult:
    entries: list[dict[str, int]] = []
    for line in section.splitlines():
        m = re.match(r"\{(.*)\}\s*hitcount:\s*(\d+)(.*)", line.strip())
        if not m:
            continue
        entry = {k: _value(v) for k, v in re.findall(r"(\w+):\s*(\S+?)\s*(?:,|$)", m.group(1))}
        entry["hitcount"] = int(m.group(2))
        entry.update({k: int(v) for k, v in re.findall(r"(\w+):\s*(-?\d+)", m.group(3))})
        entries.append(entry)
    hits = re.search(r"Hits:\s*(\d+)", section)
    dropped = re.search(r"Dropped:\s*(\d+)", section)
    return HistResult(entries, int(hits.group(1)) if hits else sum(e["hitcount"] for e in entries),
                      int(dropped.group(1)) if dropped else 0)


def summed_over_cpus(hist: HistResult, keys: tuple[str, ...]) -> HistResult:
    """One entry per value of `keys`: hitcount and summed fields added over the CPUs."""
    merged: dict[tuple[object, ...], dict[str, int]] = {}
    for e in hist.entries:
        k = tuple(e.get(f) for f in keys)
        if k not in merged:
            merged[k] = {f: e[f] for f in keys if f in e}
        for f, v in e.items():
            if f not in keys and f != CPU:
                merged[k][f] = merged[k].get(f, 0) + v
    return HistResult(list(merged.values()), hist.hits, hist.dropped)


EXITS_ALL = HistTrigger("kvm/kvm_exit", ("exit_reason",))
PIO_PORTS = HistTrigger("kvm/kvm_pio", ("port", "rw"))
USERSPACE_EXITS = HistTrigger("kvm/kvm_userspace_exit", ("reason",))
# Interrupts a local APIC accepted (MSIs, IPIs): the kicks a test sent, as KVM saw them.
ACCEPTED_IRQS = HistTrigger("kvm/kvm_apic_accept_irq", ("apicid", "vec"))
# kernel_patches/dedicated-cpu 0003: what each kick of a dedicated vCPU did, and where its NMI landed.
DEDICATED_KICKS = HistTrigger("kvm/kvm_dedicated_kick", ("vcpu_id", "old_mode", "nmi"))
DEDICATED_NMIS = HistTrigger("kvm/kvm_dedicated_nmi", ("vcpu_id", "where", "prevent_run"),
                             vals=("kicks", "self_nmis"))
DEDICATED_WINDOWS = HistTrigger("kvm/kvm_dedicated_window", ("vcpu_id", "prevented", "pending"))
STOCK_KICKS = HistTrigger("kvm/kvm_stock_kick", ("vcpu_id", "old_mode"))
# kernel_patches/dedicated-cpu-direct: relayed device interrupts, relayed vectors that came in
# root mode, physical EOIs KVM did for a trapped direct EOI, and the leak detector.
DIRECT_RELAYS = HistTrigger("kvm/kvm_dedicated_relay", ("vcpu_id", "vector"))
DIRECT_FORWARDS = HistTrigger("kvm/kvm_dedicated_forward", ("vcpu_id", "vector"))
DIRECT_PHYS_EOIS = HistTrigger("kvm/kvm_dedicated_phys_eoi", ("vcpu_id",))
DIRECT_LEAKS = HistTrigger("kvm/kvm_dedicated_leak", ("vcpu_id", "vector", "where"))
# exits that interrupted an event delivery (SVM EXITINTINFO, VMX IDT-vectoring info): with direct
# delivery, a physical interrupt whose delivery to the guest the exit cut short (TCG's nested #NPF)
EXIT_INTINFO = HistTrigger("kvm/kvm_exit", ("vcpu_id", "exit_reason", "intr_info"), filter="intr_info != 0")
# 0010: an assigned device's MSI whose remapped IRTE KVM pointed at a direct vCPU's CPU with the
# guest's vector (on 1, ret 0: done; ret != 0: refused, the relay serves it) or gave back (on 0)
DIRECT_RETARGETS = HistTrigger("kvm/kvm_dedicated_retarget", ("vcpu_id", "on", "ret"))
# host work that reached a direct vCPU's CPU by NMI (a doorbell NMI exit), re-raised at the exit
DIRECT_DEFERRED = HistTrigger("kvm/kvm_dedicated_deferred", ("vcpu_id", "work"))
# nohz_full (L1's timer/tick_stop): each time a CPU's tick could not stop, and why (dependency:
# TICK_DEP_MASK_*), or did (success 1). A direct vCPU's CPU whose tick runs enters with the host's
# timer armed: stock entries, the guest's timer KVM's (the direct ops' interrupt and msr exits)
TICK_STOPS = HistTrigger("timer/tick_stop", ("common_cpu", "success", "dependency"))
OPTIONAL = {"kicks": DEDICATED_KICKS, "kick_nmis": DEDICATED_NMIS, "kick_windows": DEDICATED_WINDOWS,
            "stock_kicks": STOCK_KICKS, "direct_relays": DIRECT_RELAYS, "direct_forwards": DIRECT_FORWARDS,
            "direct_phys_eois": DIRECT_PHYS_EOIS, "direct_leaks": DIRECT_LEAKS, "direct_deferred": DIRECT_DEFERRED,
            "direct_retargets": DIRECT_RETARGETS,
            "exit_intinfo": EXIT_INTINFO, "tick_stops": TICK_STOPS}
# optional triggers set up only where another's event exists too: L1's tick where direct
# delivery is (the direct CPU's l1-health tells it; elsewhere it is cost for nothing)
ONLY_WITH = {"tick_stops": DIRECT_RELAYS}
# Entries KVM forces to exit at once with a reschedule IPI to its own CPU (req_immediate_exit):
# the one reschedule IPI a dedicated vCPU's CPU still gets from KVM (needs the field, 5.x+).
IMMEDIATE_EXITS = HistTrigger("kvm/kvm_entry", ("vcpu_id",), filter="immediate_exit == 1")


def exits_window(start: int, end: int) -> HistTrigger:
    return HistTrigger("kvm/kvm_exit", ("exit_reason", "guest_rip"),
                       f"guest_rip >= {start:#x} && guest_rip < {end:#x}")
