"""Batch runs: several scenarios (named, or a `groups:` group) in one lab session, each L1
booted or restored once per topology and shared, `repeat` times each, into one output tree:
OUT/<scenario>/[r<N>/] per run, OUT/index.json and OUT/junit.xml over everything. A case
whose verdict changes across repeats is FLAKY, reported with its verdict counts and the
counts measured in each repeat."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.scenario import ConfigError, Scenario, find_config, list_scenarios, load_scenario
from hil.scenario.yamlsrc import load_yaml
from hil.verdict import RunResult, Verdict, error_result

INDEX_SCHEMA = "hil.batch-index/1"


def kernel_overrides(kernel: str | None) -> list[str]:
    """--kernel: a series name runs the batch with topology.l1.series set to it; a
    'debian:...' spec (a kernel line or package) replaces topology.l1.kernel instead."""
    if not kernel:
        return []
    if kernel.startswith("debian:"):
        return [f"topology.l1.kernel={kernel}"]
    return [f"topology.l1.series={kernel}"]


def select(names: Sequence[str], group: str | None, root: Path) -> list[str]:
    """The scenario names asked for: the named ones, then the group's members (file order,
    no repeats). An empty group is an error listing the groups there are."""
    chosen = list(dict.fromkeys(names))
    if group:
        groups: dict[str, list[str]] = {}
        for name in list_scenarios(root):
            # the groups: key alone (a scenario that needs a --set still belongs to its groups)
            data = load_yaml(find_config(name, "scenarios", root), name).data
            listed = data.get("groups", ["default"]) if isinstance(data, dict) else []
            for g in listed if isinstance(listed, list) else []:
                groups.setdefault(str(g), []).append(name)
        if group not in groups:
            raise ConfigError("--group", None, group, f"no scenario is in group {group!r} "
                              f"(groups: {', '.join(sorted(groups)) or 'none'})")
        chosen += [n for n in groups[group] if n not in chosen]
    if not chosen:
        raise ConfigError("hil run", None, "", "name a scenario or a --group")
    return chosen


def order_by_topology(scenarios: list[Scenario]) -> list[Scenario]:
    """Scenarios of one topology next to each other (first-seen order kept), so each L1 is
    booted once and closed before the next topology's boots (two L1s need twice the RAM)."""
    keys: dict[str, int] = {}
    for sc in scenarios:
        keys.setdefault(repr(sc.topology), len(keys))
    return sorted(scenarios, key=lambda sc: keys[repr(sc.topology)])


@dataclass
class Entry:
    scenario: str
    topology: str
    results: list[RunResult] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def flaky_cases(results: list[RunResult]) -> dict[str, dict[str, Any]]:
    """case -> {verdicts: {PASS: n, FAIL: m}, measured: [per repeat {reason: count}]} for every
    case whose verdict is not the same in all repeats."""
    per: dict[str, list[tuple[Verdict, dict[str, int]]]] = {}
    for r in results:
        for c in r.cases:
            per.setdefault(c.name, []).append((c.verdict, {row.reason: row.measured for row in c.rows}))
    out: dict[str, dict[str, Any]] = {}
    for name, seen in per.items():
        if len({v for v, _ in seen}) > 1 or len(seen) != len(results):
            counts = Counter(v.value for v, _ in seen)
            if len(seen) != len(results):
                counts["MISSING"] = len(results) - len(seen)
            out[name] = {"verdicts": dict(sorted(counts.items())), "measured": [m for _, m in seen]}
    return out


def entry_verdict(e: Entry) -> str:
    if flaky_cases(e.results):
        return "FLAKY"
    return Verdict.worst([r.verdict for r in e.results]).value


def batch_exit_code(entries: list[Entry]) -> int:
    """2 any ERROR, 1 any FAIL or FLAKY, 0 something passed, 3 everything skipped."""
    verdicts = {entry_verdict(e) for e in entries}
    if "ERROR" in verdicts:
        return 2
    if verdicts & {"FAIL", "FLAKY"}:
        return 1
    return 0 if "PASS" in verdicts else 3


def index_document(entries: list[Entry], out: Path, *, repeat: int, kernel: str | None,
                   elapsed: float, started: str) -> dict[str, Any]:
    return {
        "schema": INDEX_SCHEMA, "started": started, "elapsed_seconds": round(elapsed, 2),
        "repeat": repeat, "kernel": kernel, "exit_code": batch_exit_code(entries),
        "scenarios": [{
            "name": e.scenario, "topology": e.topology, "verdict": entry_verdict(e),
            "runs": [{"dir": os.path.relpath(d, out), "verdict": r.verdict.value, "seconds": round(s, 2),
                      "kernel": _kernel_of(r)}
                     for r, d, s in zip(e.results, e.dirs, e.seconds)],
            "flaky": flaky_cases(e.results),
        } for e in entries],
        "counts": dict(Counter(entry_verdict(e) for e in entries)),
    }


def _kernel_of(r: RunResult) -> dict[str, Any] | None:
    """The L1 kernel the run resolved to (a line moves with the archive), from its provenance."""
    image = r.provenance.get("l1", {}).get("image") if isinstance(r.provenance.get("l1"), dict) else None
    if not isinstance(image, dict):
        return None
    return {k: image.get(k) for k in ("kernel_spec", "kernel_package", "kernel_version")}


def merged_junit(entries: list[Entry], render: Callable[[RunResult], str]) -> str:
    """One <testsuites> holding each run's own suite (named .rN when repeated)."""
    root = ET.Element("testsuites", name="hil")
    for e in entries:
        for i, r in enumerate(e.results, 1):
            suite = ET.fromstring(render(r))
            if len(e.results) > 1:
                suite.set("name", f"{suite.get('name')}.r{i}")
            root.append(suite)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in root)))
    return ET.tostring(root, encoding="unicode")


def run_batch(scenarios: list[Scenario], out: Path, runner: Any, repeat: int = 1,
              on_result: Callable[[Entry, RunResult], None] | None = None) -> list[Entry]:
    """Each scenario `repeat` times, in topology order, on `runner` (a hil.runner.Runner:
    it keeps one L1 per topology; the previous topology's L1 is closed when the next starts)."""
    entries: list[Entry] = []
    current = None
    for sc in order_by_topology(scenarios):
        if current is not None and repr(sc.topology) != current:
            runner.close()
        current = repr(sc.topology)
        e = Entry(sc.name, sc.topology.name)
        entries.append(e)
        for i in range(1, repeat + 1):
            d = out / sc.name / (f"r{i}" if repeat > 1 else "")
            t0 = time.monotonic()
            try:
                r = runner.run(sc, d)
            except ConfigError as err:           # the model cannot answer: bad input, nothing ran
                r = error_result(sc.name, str(err))
            e.results.append(r)
            e.dirs.append(str(d))
            e.seconds.append(time.monotonic() - t0)
            if on_result:
                on_result(e, r)
            if runner.stopped:                   # the run was stopped: so is the batch
                return entries
    return entries


def cmd_batch(args: argparse.Namespace, root: Path) -> int:
    """`hil run` with --group, several names, --repeat or --kernel."""
    from hil.model import PROFILES
    try:
        names = select(args.scenario, args.group, root)
        overrides = kernel_overrides(args.kernel) + list(args.set)
        scenarios = [load_scenario(n, root=root, overrides=overrides, valid_profiles=PROFILES) for n in names]
    except ConfigError as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    return run_cli(scenarios, args)


def run_cli(scenarios: list[Scenario], args: argparse.Namespace, out_prefix: str = "hil-batch") -> int:
    """Run loaded scenarios as one batch under the lab lock; print each table and a summary;
    write the tree. args: accel, out, repeat, kernel, no_wait."""
    from hil.report import html, json as json_report, junit, text
    from hil.runner import LabBusy, Runner, lab_lock

    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.repeat < 1:
        print("hil: --repeat must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out or f"{out_prefix}-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"hil: --out: cannot write there: {e}", file=sys.stderr)
        return 2
    done = [0]

    def show(e: Entry, r: RunResult) -> None:
        done[0] += 1
        print(text.render(r))
        print(f"[{done[0]}/{len(scenarios) * args.repeat}] {r.scenario}: {r.verdict.value} "
              f"({e.seconds[-1]:.1f} s)\n", flush=True)
        d = Path(e.dirs[-1])
        json_report.write(d / "result.json", r, elapsed_seconds=round(e.seconds[-1], 2))
        (d / "junit.xml").write_text(junit.render(r))
        try:                       # the plots are a view: a report that cannot be drawn loses no verdict
            html.write(d / "report.html", json_report.load(d / "result.json"))
        except Exception as err:   # noqa: BLE001
            print(f"hil: {d}/report.html not written: {type(err).__name__}: {err}", file=sys.stderr)

    try:
        with lab_lock(wait=not args.no_wait), Runner(accel=args.accel, host=getattr(args, "host", False)) as runner:
            entries = run_batch(scenarios, out, runner, args.repeat, on_result=show)
    except LabBusy as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - t0
    doc = index_document(entries, out, repeat=args.repeat, kernel=args.kernel, elapsed=elapsed, started=started)
    (out / "index.json").write_text(json.dumps(doc, indent=2))
    (out / "junit.xml").write_text(merged_junit(entries, junit.render))
    try:
        html.write_index(out, [Path(d) / "result.json" for e in entries for d in e.dirs
                               if (Path(d) / "result.json").exists()], title=f"hil batch {out.name}")
    except Exception as err:       # noqa: BLE001
        print(f"hil: {out}/index.html not written: {type(err).__name__}: {err}", file=sys.stderr)
    for s in doc["scenarios"]:
        line = f"{s['name']:28s} {s['verdict']:6s} " + " ".join(r["verdict"] for r in s["runs"])
        print(line + "".join(f"\n    FLAKY {c}: {v['verdicts']}" for c, v in s["flaky"].items()))
    print(f"batch: {len(entries)} scenarios x {args.repeat}: " +
          ", ".join(f"{n} {v}" for v, n in sorted(doc["counts"].items())) + f"; index {out / 'index.json'}")
    print(f"elapsed {elapsed:.1f} s")
    return int(doc["exit_code"])
