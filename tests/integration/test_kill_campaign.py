"""The kill campaign: hil, L1 QEMU and build children are killed (SIGKILL, SIGTERM, SIGINT,
SIGHUP) at named stages, at least 50 times. After each kill: hil exits 2 (or dies of the
signal, never 1), and once the next hil has started nothing is left (process, socket, temp
dir, snapshot temp file, cache temp dir, build record, mount, network interface); earlier
results and cache entries are intact (hashes); the run after the campaign passes.

A private lab (its own XDG_CACHE_HOME hard-linked from the warm shared cache, its own
TMPDIR) makes "nothing left" exact. L2 QEMU and the agent run inside L1, out of the host's
reach: their death is what killing L1 QEMU at the L2 stage does to hil.
HIL_KILL_ROUNDS=N repeats the hil-signal kills N times (default 1)."""
from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hil.lab.assets.cache import cache_root

from reliability import (HIL, SCENARIO, STAGE_LINES, Hil, entries_hash, leftovers, private_lab, tree_hash,
                         wait_gone)

pytestmark = [pytest.mark.lab, pytest.mark.deep]    # the fast tier: test_crash_cleanup
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: hil's own stages, each seen by its stage line or file, with a delay after it (seconds; for
#: the L2 stages a fraction of the L2 run's length, measured on this host first)
HIL_STAGES = {"start": (None, 0.3), "image": ("image", 0.0), "accel": ("accel", 0.0),
              "restore": ("restore", 0.2), "upload": ("repro.sh", 0.0), "l2": ("l2", 0.1),
              "l2-workload": ("l2", 0.5), "counters": ("l2", 0.85)}
L2_STAGES = ("l2", "l2-workload", "counters")
MIN_KILLS = 50


class Campaign:
    def __init__(self, lab, out_root: Path, seed: int):
        self.lab = lab
        self.out_root = out_root
        self.rng = random.Random(seed)
        self.known: set[tuple[int, int]] = set()        # every process any earlier hil had
        self.kills: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.leftovers_found = 0
        self.checks = 0
        self.n = 0
        self.mounts = Path("/proc/mounts").read_text()
        self.nets = sorted(os.listdir("/sys/class/net"))
        self.guard: dict[Path, str] = {}                # earlier results: path -> hash

    def start(self, argv: list[str] | None = None) -> tuple[Hil, Path]:
        self.n += 1
        out = self.out_root / f"run{self.n:03d}"
        argv = argv or [*HIL, "run", SCENARIO, "--accel", "tcg", "--out", str(out)]
        return Hil(argv, self.lab.env()), out

    def check_clean(self, live: Hil | None) -> None:
        """Called once the next hil has swept (its first stage line) or after the last one."""
        wait_gone(self.known - (live.seen if live else set()))
        problems = leftovers(self.lab, self.known, live, self.mounts, self.nets)
        self.checks += 1
        self.leftovers_found += len(problems)
        assert problems == [], f"after kill #{sum(self.kills.values())}: {problems}"
        for path, digest in self.guard.items():
            assert _hash(path) == digest, f"an earlier result changed: {path}"

    def kill(self, victim: str, sig: signal.Signals, stage: str, ready, find=None, delay: float = 0.0,
             argv: list[str] | None = None, swept: str | None = "line") -> int | None:
        """Start hil, check the lab is clean once it has swept (at its first stage line, or
        once the stage is reached for `swept="ready"`, not at all for a kill before the
        sweep), wait for the stage, kill the victim, check how hil ended. Returns hil's exit
        code (None: it finished first)."""
        hil, out = self.start(argv)
        if swept == "line":              # it has swept: what earlier kills left must be gone now
            hil.wait_for(lambda: hil.has(STAGE_LINES["image"]), 300)
            self.check_clean(hil)
        reached = hil.wait_for(lambda: ready(hil, out), 300)
        if swept == "ready" and reached:
            self.check_clean(hil)
        time.sleep(delay)
        target = hil.proc.pid if victim == "hil" else (find(hil) if find else None)
        if not reached or target is None or hil.proc.poll() is not None:
            rc = hil.finish()
            self.known |= hil.seen
            assert rc == 0, f"{victim}@{stage}: hil ended before the kill with {rc}:\n{hil.output}"
            return None
        os.kill(target, sig)
        self.kills[(victim, sig.name, stage)] += 1
        rc = hil.finish(timeout=180)
        self.known |= hil.seen
        what = f"{victim} {sig.name} at {stage} (run {self.n}, {time.monotonic() - hil.t0:.1f} s)"
        assert rc != 1, f"{what}: exit 1 is FAIL, never a kill's result:\n{hil.output}"
        if victim == "hil" and sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL, f"{what}: {rc}"
        else:                          # hil saw it: ERROR, or killed by the signal before its handler
            assert rc in (2, -sig), f"{what}: exit {rc}:\n{hil.output}"
        if rc == 2 and (out / "result.json").exists():
            result = json.loads((out / "result.json").read_text())
            assert result["verdict"] == "ERROR", f"{what}: {result['verdict']}"
            self.guard[out / "result.json"] = _hash(out / "result.json")
        return rc


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else tree_hash(path)


def _line(stage: str):
    return lambda hil, out: hil.has(STAGE_LINES[stage])


def _hil_ready(stage: str):
    what, _ = HIL_STAGES[stage]
    if what is None:
        return lambda hil, out: True
    if what == "repro.sh":
        return lambda hil, out: (out / "repro.sh").exists()
    return _line(what)


def _l1_qemu(hil: Hil) -> int | None:
    return hil.descendant("qemu-system-x86_64")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, warm_result):
    root = tmp_path_factory.mktemp("kill-campaign")
    lab = private_lab(root / "lab")
    # the kvm-only source trees a modules build copies (not the GB full-kernel ones)
    src = cache_root() / "kernel-source"
    (lab.cache / "kernel-source").mkdir()
    for entry in src.glob("*"):
        tree = entry / "tree"
        if (entry / "inputs.json").exists() and tree.is_dir() and sum(1 for _ in tree.rglob("*")) < 5000:
            subprocess.run(["cp", "-al", str(entry), str(lab.cache / "kernel-source" / entry.name)], check=True)
    return lab


def test_kill_campaign(lab, tmp_path, capsys):
    t0 = time.monotonic()
    seed = int(os.environ.get("HIL_KILL_SEED", "12"))
    rounds = int(os.environ.get("HIL_KILL_ROUNDS", "1"))
    c = Campaign(lab, tmp_path, seed)
    before = entries_hash(lab.cache, ("kernel", "l1-image"))

    # an earlier result every later kill must leave alone
    hil, out = c.start()
    assert hil.finish(timeout=300) == 0, hil.output
    c.known |= hil.seen
    c.guard[out] = _hash(out)
    result = json.loads((out / "result.json").read_text())
    snapshot = Path(result["provenance"]["l1"]["start"].removeprefix("restored "))   # the idle one
    image_key = result["provenance"]["l1"]["image"]["image_key"]
    l2_run = result["measurement"]["timings"]["l2_run"]       # from the "L2:" line to the agent's answer
    assert snapshot.is_file(), result["provenance"]["l1"]["start"]

    # 1. hil itself, each signal at each stage (the order shuffled, the delays jittered)
    plan = [(sig, stage) for _ in range(rounds) for sig in SIGNALS for stage in HIL_STAGES]
    c.rng.shuffle(plan)
    for sig, stage in plan:
        delay = HIL_STAGES[stage][1] * (l2_run if stage in L2_STAGES else 1.0) * c.rng.uniform(0.9, 1.1)
        c.kill("hil", sig, stage, _hil_ready(stage), delay=delay, swept=None if stage == "start" else "line")

    # 2. L1 QEMU while it restores and while L2 runs inside it (L2 QEMU and the agent die with it)
    for sig in (signal.SIGKILL, signal.SIGTERM):
        c.kill("l1-qemu", sig, "restore", _line("restore"), _l1_qemu, delay=0.2)
        # half the L2 run in (a fixed 1 s outlived a parked run: the kill never landed)
        c.kill("l1-qemu", sig, "l2", _line("l2"), _l1_qemu, delay=0.5 * l2_run)

    # 3. snapshot save: L1 booted (its snapshot and the parked ones removed), killed while it
    # migrates to the temp file
    parked_dir = lab.cache / "l1-parked"
    for victim, sig in (("hil", signal.SIGKILL), ("l1-qemu", signal.SIGKILL)):
        snapshot.unlink(missing_ok=True)
        for parked in parked_dir.glob("*.state"):
            parked.unlink()
        saving = lambda hil, out: hil.has(STAGE_LINES["save"]) and any(
            p.name.startswith(f".{snapshot.name}.") for p in snapshot.parent.iterdir())
        c.kill(victim, sig, "snapshot-save", saving, None if victim == "hil" else _l1_qemu, delay=0.3)

    # 3b. the parked snapshot's save (L2's QEMU parked in a restored L1): while L1 migrates to
    # the temp file, and while the temp file is fsynced and renamed behind the L2 run
    for victim, sig, delay in (("hil", signal.SIGKILL, 0.1), ("hil", signal.SIGTERM, 0.1), ("hil", signal.SIGINT, 0.6),
                               ("hil", signal.SIGKILL, 0.6), ("l1-qemu", signal.SIGKILL, 0.1)):
        for parked in parked_dir.glob("*.state"):
            parked.unlink()
        parking = lambda hil, out: hil.has(STAGE_LINES["park"]) and parked_dir.is_dir() and any(
            p.name.startswith(".") and ".state." in p.name for p in parked_dir.iterdir())
        c.kill(victim, sig, "parked-save", parking, None if victim == "hil" else _l1_qemu, delay=delay)

    # 4. the probe build (its cache entry removed): make, or hil while make runs
    probe_dir = lab.cache / "probe"
    for victim, sig in (("make", signal.SIGKILL), ("hil", signal.SIGKILL), ("hil", signal.SIGTERM),
                        ("hil", signal.SIGHUP)):
        for entry in probe_dir.glob("*"):
            if entry.is_dir() and not entry.name.startswith("."):
                shutil.rmtree(entry)
        making = lambda hil, out: hil.descendant("make") is not None
        c.kill(victim, sig, "probe-build", making, lambda hil: hil.descendant("make"), delay=0.3)

    # 5. the L1 image build (its entry moved aside): hil while it stages files and compiles
    image = lab.cache / "l1-image" / image_key
    aside = lab.root / "image-aside"
    image.rename(aside)
    try:
        for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGTERM):
            building = lambda hil, out: any(p.name.startswith(f".{image_key}.") and p.is_dir()
                                            for p in image.parent.iterdir())
            c.kill("hil", sig, "image-build", building, delay=c.rng.uniform(0.5, 3.0))
    finally:
        shutil.rmtree(image, ignore_errors=True)
        aside.rename(image)

    # 6. hil kernel build: make's whole process group goes with hil
    for victim, sig in (("hil", signal.SIGTERM), ("hil", signal.SIGKILL), ("hil", signal.SIGINT),
                        ("hil", signal.SIGHUP), ("make", signal.SIGKILL)):
        argv = [*HIL, "kernel", "build", "--series", "dedicated-cpu"]
        making = lambda hil, out: hil.descendant("make", "modules") is not None
        c.kill(victim, sig, "kernel-build", making, lambda hil: hil.descendant("make", "modules"),
               delay=c.rng.uniform(0.5, 2.0), argv=argv, swept="ready")

    # a run that ended before its kill (a late stage) does not count: top up to MIN_KILLS
    for _ in range(20):
        if sum(c.kills.values()) >= MIN_KILLS * rounds:
            break
        stage = c.rng.choice(("image", "accel", "restore", "upload", "l2"))
        c.kill("hil", c.rng.choice(SIGNALS), stage, _hil_ready(stage),
               delay=HIL_STAGES[stage][1] * (l2_run if stage in L2_STAGES else 1.0))

    # the next run starts clean, and passes; the entries it did not rebuild are unchanged
    hil, out = c.start()
    hil.wait_for(lambda: hil.has(STAGE_LINES["image"]), 300)
    c.check_clean(hil)
    assert hil.finish(timeout=600) == 0, hil.output
    c.known |= hil.seen
    c.check_clean(None)
    after = entries_hash(lab.cache, ("kernel", "l1-image"))
    assert {k: v for k, v in after.items() if k in before} == {k: before[k] for k in after if k in before}

    total = sum(c.kills.values())
    by_signal = collections.Counter()
    by_stage = collections.Counter()
    for (victim, sig, stage), n in c.kills.items():
        by_signal[sig] += n
        by_stage[f"{victim}@{stage}"] += n
    with capsys.disabled():
        print(f"\nkill campaign: {total} kills in {time.monotonic() - t0:.0f} s (seed {seed}), "
              f"{c.checks} leftover checks, leftovers found: {c.leftovers_found}")
        print("  per signal: " + ", ".join(f"{k} {v}" for k, v in sorted(by_signal.items())))
        print("  per victim@stage: " + ", ".join(f"{k} {v}" for k, v in sorted(by_stage.items())))
    assert total >= MIN_KILLS * rounds
    assert sum(n for (victim, _, stage), n in c.kills.items() if (victim, stage) == ("l1-qemu", "l2")) >= 1
