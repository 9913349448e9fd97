"""What the lab measured in one run, with names resolved: the data the verdict reads.

It sits below the lab so the verdict can read a Measurement without importing the lab;
the lab fills it in (hil/lab/results.py). Each type has one serialisation: `to_dict`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# host interrupts by kind, then by L1 CPU ("0", "1", ...): local_timer, reschedule, ...
HostInterrupts = dict[str, dict[str, int]]


@dataclass(frozen=True)
class KickFinding:
    """What kvm_vcpu_kick found for vCPU 0 (dedicated-cpu series' kvm_dedicated_kick)."""
    mode: str          # vcpu->mode the cmpxchg read: outside | in-guest | exiting | ...
    nmi: bool          # whether the kick sent an NMI
    count: int


@dataclass(frozen=True)
class NmiLanding:
    """NMIs that landed at one place on vCPU 0's CPU (kvm_dedicated_nmi), split by cause."""
    where: str         # guest | entry | host | idle
    nmis: int
    kicks: int         # of them sent by a kick
    self_nmis: int     # of them sent by prevent-run to its own CPU
    prevent_run: int   # of them that armed prevent-run


@dataclass
class KickTrace:
    """vCPU 0's kicks over the whole L2 run, as KVM saw them."""
    accepted: int = 0                                   # interrupts its APIC accepted on the kick vectors
    io_thread_msis: list[int] = field(default_factory=list)   # KVM_SIGNAL_MSI result of each I/O-thread kick
    host_interrupts_per_op: dict[str, HostInterrupts] = field(default_factory=dict)
    # vCPU -> immediate-exit IPIs KVM sent itself, per op (not host interrupts of the CPU)
    immediate_exits_per_op: dict[str, dict[str, int]] = field(default_factory=dict)
    series_traced: bool = False                         # the dedicated-cpu tracepoints were there
    found: list[KickFinding] = field(default_factory=list)
    landed: list[NmiLanding] = field(default_factory=list)
    guest_nmis_all_vcpus: int = 0                       # kvm_exit's hist does not tell vCPUs apart
    window: int = 0                                     # kick NMIs past the request check, VMRUN ahead
    window_pending: int = 0                             # of them, with the kick's request still pending
    stock_kicks: dict[str, int] = field(default_factory=dict)   # stock path: vcpu->mode -> kicks
    # dedicated-cpu-direct: device interrupts relayed to vCPU 0's CPU as physical IPIs, relayed
    # vectors that came in root mode (forwarded to the virtual APIC), physical EOIs KVM did
    relays: int = 0
    forwards: int = 0
    phys_eois: int = 0
    deferred: int = 0                                   # exits that re-raised host work sent by NMI
    # 0010: assigned-device MSIs whose remapped IRTE KVM pointed at vCPU 0's CPU with the guest's
    # vector (their interrupts then reach the guest with no host handler and no relay), and the
    # IRTE writes it tried and that failed (those MSIs stay relayed)
    retargets: int = 0
    retarget_failures: int = 0
    # exits that cut an event delivery short: {vcpu_id, exit_reason, intr_info, hitcount} (diagnostic)
    exit_intinfo: list[dict[str, int]] = field(default_factory=list)

    def found_count(self, mode: str, nmi: bool) -> int:
        return sum(f.count for f in self.found if f.mode == mode and f.nmi == nmi)

    @property
    def self_nmis(self) -> int:
        return sum(l.self_nmis for l in self.landed)

    def host_interrupts(self, op: str, cpu: int) -> dict[str, int] | None:
        """Host interrupts by kind on one L1 CPU while `op` ran (None: not measured)."""
        per_op = self.host_interrupts_per_op.get(op)
        if not per_op:
            return None
        return {kind: cpus.get(str(cpu), 0) for kind, cpus in per_op.items()}


@dataclass(frozen=True)
class LatencyStats:
    """A distribution of per-interrupt times in ns: order statistics and a log2 histogram."""
    n: int
    min: float
    p50: float
    p99: float
    max: float
    mean: float
    histogram: list[dict[str, float]]     # non-empty buckets: {"lo_ns", "hi_ns", "count"}, lo <= v < hi
    samples: list[int] = field(default_factory=list)   # every value, ns, in the order measured


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (q in 0..100): a value that was measured."""
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def latency_stats(values_ns: list[float]) -> LatencyStats | None:
    if not values_ns:
        return None
    v = sorted(values_ns)
    kept = [round(x) for x in values_ns]
    buckets: dict[int, int] = {}
    for x in v:
        b = max(0, int(x)).bit_length()           # bucket b holds [2^(b-1), 2^b)
        buckets[b] = buckets.get(b, 0) + 1
    hist = [{"lo_ns": float(1 << (b - 1)) if b else 0.0, "hi_ns": float(1 << b), "count": n}
            for b, n in sorted(buckets.items())]
    return LatencyStats(len(v), v[0], percentile(v, 50), percentile(v, 99), v[-1], sum(v) / len(v), hist, kept)


@dataclass
class OpMeasurement:
    op: str
    count: int | None            # what the probe reported doing (None: it never said)
    exits: dict[str, int]        # reason name -> exits at RIPs inside this op's code
    tsc: int | None = None
    reported: dict[str, Any] = field(default_factory=dict)   # the probe's own line, e.g. hlts=
    # the probe's event=samples lines, by kind, as printed (guest/devices.c): dev ops and
    # net-tx "lat" (TSC request -> ISR entry), net-rx "isr" (TSC at each ISR from the op's
    # start) and "sender" (the sender's ns stamps from the first frame's)
    samples: dict[str, list[int]] = field(default_factory=dict)
    # samples turned into ns: "lat" (per interrupt), net-rx "isr_interval" and "sender_interval"
    latency: dict[str, LatencyStats] = field(default_factory=dict)
    # reason -> guest RIP (hex) -> exits: where in the op's code each exit happened
    rips: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Measurement:
    arch: str
    ops: list[OpMeasurement]
    exits_all: dict[str, int]            # the whole L2 run, every reason
    exits_outside_ops: dict[str, int]    # inside the probe's window but in no op's code (its glue)
    pio: dict[str, int]                  # "0x4d0/in" -> count over the whole run
    userspace_exits: dict[str, int]      # KVM_EXIT_* reason -> count over the whole run
    counters: dict[str, int]             # KVM's own vCPU stats, summed over vCPUs
    probe_events: list[dict[str, Any]]
    ended_by: str                        # done | exit | timeout
    provenance: dict[str, Any]
    timings: dict[str, float]
    logs: dict[str, str] = field(default_factory=dict)
    kick_trace: KickTrace = field(default_factory=KickTrace)
    l2_exitcode: int | None = None       # L2 QEMU's exit code (None: hil stopped it)
    # after a direct-mode run: the agent answered, sick L1 console lines, leak detector hits
    l1_health: dict[str, Any] | None = None
    # a foreign kernel's own report: kvm-unit-tests' status (exit code >> 1) and PASS/FAIL/SKIP lines
    payload_report: dict[str, Any] = field(default_factory=dict)
    # L2's devices (hil/lab/devices): kind -> {"info": what L1 set up, "host": L1-side counts}
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # frames on the tap (hil/lab/stimuli/net_frames.py): "frame-sender" / "frame-counter" -> result
    frames: dict[str, dict[str, Any]] = field(default_factory=dict)

    def op(self, name: str) -> OpMeasurement | None:
        return next((o for o in self.ops if o.op == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
