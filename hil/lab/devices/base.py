"""A device's two halves: a spec (L0's side, JSON across the agent channel) and what the
agent attached in L1 for one L2 run (the L2 arguments, a host-side observer, teardown)."""
from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.stimuli.base import Driver

MODULE_DIR = Path("/lib/modules/hil")    # the L1 image's staged modules (hil/lab/assets/l1_image.py)


@dataclass
class Attached:
    """One device set up in L1 for one L2 run."""
    l2_argv: list[str]
    info: dict[str, Any] = field(default_factory=dict)        # what was set up (BDF, tap name, ...)
    observer: Driver = field(default_factory=Driver)           # host-side counts around the run
    undo: list[Callable[[], None]] = field(default_factory=list)   # run in reverse order

    def teardown(self) -> list[str]:
        """Undo the set-up; every step runs, the failures are returned (never raised)."""
        errors = []
        for step in reversed(self.undo):
            try:
                step()
            except Exception as e:     # one failing step must not leave the others behind
                errors.append(f"{type(e).__name__}: {e}")
        self.undo.clear()
        return errors


@dataclass(frozen=True)
class DeviceSpec:
    kind: ClassVar[str]

    # -- L0's side (hil/lab/run.py, hil/lab/qemu/argv.py) --
    def l0_machine_options(self) -> list[str]:
        """Options appended to L1's -machine (e.g. kernel-irqchip=split)."""
        return []

    def l0_argv(self) -> list[str]:
        """QEMU arguments L0 adds to L1's machine."""
        return []

    def l1_append(self) -> list[str]:
        """Words for L1's kernel command line."""
        return []

    def module_group(self) -> str | None:
        """The L1 image's module group (hil/lab/assets/l1_image.py MODULE_GROUPS) the agent loads."""
        return None

    def l1_snapshot_safe(self) -> bool:
        """Whether an idle L1 restored from a snapshot still has what L0 gave it for this device."""
        return True

    # -- the agent's side, in L1 --
    def attach(self, run_dir: Path) -> Attached:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


def device_from_json(d: dict[str, Any]) -> DeviceSpec:
    from hil.lab.devices.vfio_pci import VfioPci
    from hil.lab.devices.virtio_net import VirtioNet
    kinds: dict[str, type[DeviceSpec]] = {c.kind: c for c in (VfioPci, VirtioNet)}
    if d.get("kind") not in kinds:
        raise ValueError(f"unknown device kind {d.get('kind')!r} (known: {', '.join(kinds)})")
    cls = kinds[d["kind"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def load_modules(group: str, fix: str) -> list[str]:
    """insmod the image's module group in its load order; a module missing from the image
    is a missing capability, one that exists but does not load is the lab failing."""
    if not Path("/proc/modules").exists():
        # a whole kernel hil built (no CONFIG_MODULES): what it has is built in; a driver it
        # lacks shows where the device is bound (no such driver in sysfs)
        return []
    order = MODULE_DIR / f"order.{group}"
    if not order.is_file():
        raise CapabilityMissing(f"L1's image has no {group} modules ({order} missing): {fix}")
    loaded = {line.split()[0] for line in Path("/proc/modules").read_text().splitlines() if line}
    done = []
    for name in order.read_text().split():
        if name.replace("-", "_") in loaded:
            continue
        r = subprocess.run(["insmod", str(MODULE_DIR / f"{name}.ko")], capture_output=True, text=True)
        if r.returncode != 0 and "File exists" not in r.stderr:
            raise LabError(f"insmod {name} failed in L1: {r.stderr.strip()}\n{dmesg_tail()}")
        done.append(name)
    return done


def dmesg_tail(lines: int = 20) -> str:
    """L1's kernel log, last lines: what a failed bind or insmod left there."""
    r = subprocess.run(["dmesg"], capture_output=True, text=True)
    return "L1's kernel log ends:\n" + "\n".join(r.stdout.splitlines()[-lines:])


def proc_interrupts(match: str, text: str | None = None) -> dict[str, dict[str, int]]:
    """/proc/interrupts lines whose name contains `match`: "IRQ NAME" -> {cpu: count} (cpu "0", "1", ...)."""
    lines = (Path("/proc/interrupts").read_text() if text is None else text).splitlines()
    if not lines:
        return {}
    ncpu = len(lines[0].split())
    out: dict[str, dict[str, int]] = {}
    for line in lines[1:]:
        if match not in line:
            continue
        parts = line.split()
        counts = parts[1:1 + ncpu]
        if not all(c.isdigit() for c in counts):
            continue
        name = " ".join(parts[1 + ncpu:])
        out[f"{parts[0].rstrip(':')} {name}"] = {str(i): int(c) for i, c in enumerate(counts)}
    return out


class InterruptCounter(Driver):
    """Host interrupts of one kind (by /proc/interrupts name) per L1 CPU over the L2 run."""

    def __init__(self, match: str):
        self.match = match
        self.before: dict[str, dict[str, int]] = {}
        self.after: dict[str, dict[str, int]] | None = None

    def before_start(self, vm: Any) -> None:
        self.before = proc_interrupts(self.match)

    def finish(self, vm: Any) -> None:
        if self.after is None:
            self.after = proc_interrupts(self.match)

    def result(self) -> dict[str, Any]:
        if self.after is None:
            self.after = proc_interrupts(self.match)
        per_line = {irq: {c: n - self.before.get(irq, {}).get(c, 0) for c, n in cpus.items()}
                    for irq, cpus in self.after.items()}
        per_cpu: dict[str, int] = {}
        for cpus in per_line.values():
            for c, n in cpus.items():
                per_cpu[c] = per_cpu.get(c, 0) + n
        return {"match": self.match, "per_irq": per_line, "per_cpu": per_cpu, "total": sum(per_cpu.values())}
