"""Fuzz campaign of the config loader (issue 12): over 5,000 documents and --set strings through
load_scenario, each within 2 s of CPU time (a 30 s alarm catches a hang; wall time alone
made the campaign fail on a loaded box); the only exception allowed is ConfigError, and it must
name the file and a line (or the --set override).

Five deterministic (derandomized) hypothesis campaigns: structured scenario-like documents with
junk keys and values, text mutations of the shipped scenarios and of the shipped topologies,
raw bytes, and random --set strings. A document is not shrunk on failure: the campaign collects
every failing document and reports them all (so one run lists every distinct bug)."""
from __future__ import annotations

import os
import resource
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from hil.model import PROFILES
from hil.runner import watchdog
from hil.scenario import ConfigError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "qemu_configs/scenarios").glob("*.yaml"))
TOPOLOGIES = sorted((ROOT / "qemu_configs/topologies").glob("*.yaml"))
PER_DOC_SECONDS = 2.0            # CPU seconds the loader may spend on one document
HANG_SECONDS = 30.0              # wall clock: a document the loader never finishes
PER_DOC_MIB = 100
MAX_MESSAGE = 10_000     # characters: an error quoting an expanded alias bomb is a hang in waiting
WL = "workload:\n  kind: probe\n  ops:\n    - {op: cpuid, count: 4}\n"


@dataclass
class Campaign:
    tmp: Path
    outcomes: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def run(self, scenario: bytes, topology: bytes | None = None, overrides: Sequence[str] = ()) -> None:
        spath, tpath = self.tmp / "s.yaml", self.tmp / "t.yaml"
        if topology is not None:
            tpath.write_bytes(topology)
            scenario = scenario.replace(b"@TOPO@", str(tpath).encode())
        spath.write_bytes(scenario)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu_before = time.process_time()
        try:
            with watchdog(HANG_SECONDS, "one document"):   # RunTimeout: a failure like any other
                try:
                    load_scenario(str(spath), root=ROOT, overrides=list(overrides), valid_profiles=PROFILES)
                finally:
                    cpu = time.process_time() - cpu_before
                    if cpu > PER_DOC_SECONDS:
                        self.fail(f"took {cpu:.1f} s of CPU", scenario, topology, overrides)
            self.outcomes["accepted"] += 1
        except ConfigError as e:
            self.outcomes["ConfigError"] += 1
            if len(e.message) > MAX_MESSAGE:
                self.fail(f"ConfigError message of {len(e.message)} characters", scenario, topology, overrides)
            named = e.file == "--set" or (e.line is not None and e.file in (str(spath), str(tpath))) or \
                (e.line is not None and e.file.startswith("qemu_configs/"))
            if not named:
                self.fail(f"ConfigError without file and line: {e}", scenario, topology, overrides)
        except Exception as e:   # noqa: BLE001 -- the point: anything else is a bug
            self.outcomes[type(e).__name__] += 1
            tb = traceback.extract_tb(e.__traceback__)[-1]
            self.fail(f"{type(e).__name__}: {str(e)[:200]} at {Path(tb.filename).name}:{tb.lineno}",
                      scenario, topology, overrides)
        grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        if grown_mib > PER_DOC_MIB:     # the high-water mark moved: this document alone took that much
            self.fail(f"took over {PER_DOC_MIB} MiB ({grown_mib:.0f})", scenario, topology, overrides)

    def fail(self, what: str, scenario: bytes, topology: bytes | None, overrides: Sequence[str]) -> None:
        self.failures.append(f"{what}\n  scenario={scenario[:400]!r}\n  topology={(topology or b'')[:400]!r}"
                             f"\n  overrides={list(overrides)!r}")

    def check(self, at_least: int) -> None:
        total = sum(self.outcomes.values())
        print(f"{total} documents: {dict(self.outcomes)}")
        assert not self.failures, f"{len(self.failures)} of {total} documents broke the loader:\n" + \
            "\n".join(self.failures[:25])
        assert total >= at_least, f"only {total} documents were tried ({dict(self.outcomes)})"


# -- ingredients -------------------------------------------------------------------------
JUNK = [
    "", " ", "~", "null", "!!int x", "!!bool maybe", "!foo", "!!python/object/apply:os.system ['id']",
    "&a", "*a", "&a [*a]", "<<", "<<: *a", "? x", "?", "[", "]", "{", "}", "- ", "-", ":", ": ", "'", '"',
    "#", "|", ">", "\t", "\x00", "\x01", "\x1b[31m", "%YAML 1.1", "---", "...", "on", "off", "yes", "0x1F",
    "1e9", ".inf", ".nan", "2024-13-45", "2024-01-01", "1_000", "0o17", "10:20:30", "ö", "\u2028", "\ufeff",
    "\r", "\n", "\n  ", "a" * 300, "9" * 5000, "-1", "0", "=", ",", "@", "`", "%", "\\", "[[[[[[[[",
    "{a: 1, a: 2}", "[~, ]", "\n- \n", "\nx:\n", " &x", " *x", "$(touch pwned)",
]
RAW_JUNK = [b"\xff", b"\xfe\xff", b"\xc3", b"\xe9", b"\x80\x80", b"\xef\xbb\xbf", b"\x00\x00"]
KEYS = ["description", "topology", "profile", "arch", "groups", "workload", "expect", "kind", "ops", "op",
        "count", "hlt_timer_us", "kick_interval_ms", "race_timeout_us", "kernel", "append", "initrd",
        "done_pattern", "reasons", "exits", "min", "max", "accel", "timeout", "l1", "l2", "series", "machine",
        "cpu", "smp", "memory", "qemu_params", "boot_timeout", "snapshot", "kernel_irqchip", "cpu_pm",
        "dedicated", "pin", "on", "<<", "", "0", "kernal", "cöunt"]
WORDS = ["probe", "kernel", "cpuid", "pio-kernel", "pio-user", "msr", "hlt", "kicks", "ipi-race", "auto", "svm",
         "vmx", "tcg", "kvm", "on", "split", "off", "v1", "v2", "all", "stock-svm", "stock-vmx", "nested-svm",
         "nested-svm-cpu-pm", "no-such-topology", "dedicated-cpu", "debian:linux-image-6.1.0-56-amd64",
         "/dev/zero", "/etc", "../../../../etc/passwd", "/bin/true", "(unclosed", "default"]
SOURCES_S = [p.read_bytes() for p in SCENARIOS]
SOURCES_T = [p.read_bytes() for p in TOPOLOGIES]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(0, 100),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.sampled_from(WORDS))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=8)


op_items = st.one_of(st.fixed_dictionaries({"op": st.sampled_from(WORDS[2:9]), "count": st.integers(1, 50)}),
                     st.fixed_dictionaries({"op": st.sampled_from(WORDS), "count": scalars}), values)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A scenario-shaped document: a plausible skeleton (a topology, a probe or kernel workload)
    with wrong keys, wrong values and junk drawn into it."""
    doc: dict[str, object] = {}
    mostly = st.sampled_from([True] * 9 + [False])
    if draw(mostly):
        doc["topology"] = draw(st.one_of(
            st.sampled_from([p.stem for p in TOPOLOGIES]), values,
            st.fixed_dictionaries({}, optional={
                "accel": st.one_of(st.sampled_from(["auto", "kvm", "tcg"]), values),
                "l1": st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
                "l2": st.dictionaries(st.sampled_from(KEYS), values, max_size=3)})))
    if draw(mostly):
        doc["workload"] = draw(st.fixed_dictionaries({"ops": st.lists(op_items, min_size=1, max_size=4)}, optional={
            "kind": st.one_of(st.sampled_from(["probe", "kernel"]), values), "kernel": st.one_of(st.sampled_from(WORDS[-6:]), values),
            "hlt_timer_us": scalars, "done_pattern": values, "initrd": values, "kick_interval_ms": scalars}))
    if not draw(mostly):
        doc.update(draw(st.dictionaries(st.sampled_from(KEYS[:21]), values, max_size=2)))
    text = yaml.safe_dump(doc, default_flow_style=draw(st.sampled_from([None, True, False])), allow_unicode=True)
    return draw(mutations(text.encode()))


@st.composite
def mutations(draw: st.DrawFn, data: bytes, most: int = 2) -> bytes:
    """Zero to `most` small edits: deletions, junk insertions, empty values, duplicated or
    re-indented lines, truncation, raw non-UTF-8 bytes."""
    for _ in range(draw(st.integers(0, most))):
        op = draw(st.sampled_from(["delete", "insert", "insert", "empty-value", "junk-value", "empty-item",
                                   "dup-line", "indent", "truncate", "raw"]))
        i = draw(st.integers(0, len(data)))
        if op == "delete":
            data = data[:i] + data[i + draw(st.integers(1, 30)):]
        elif op == "insert":
            data = data[:i] + draw(st.sampled_from(JUNK)).encode() + data[i:]
        elif op == "raw":
            data = data[:i] + draw(st.sampled_from(RAW_JUNK)) + data[i:]
        elif op == "truncate":
            data = data[:i]
        else:
            lines = data.split(b"\n")
            n = draw(st.integers(0, max(0, len(lines) - 1)))
            line = lines[n]
            if op in ("empty-value", "junk-value") and b":" in line:
                head = line[:line.index(b":") + 1]
                line = head if op == "empty-value" else head + b" " + draw(st.sampled_from(JUNK)).encode()
            elif op == "empty-item" and line.lstrip().startswith(b"- "):
                line = line[:line.index(b"- ")] + draw(st.sampled_from([b"-", b"- ~", b"- null", b"- []", b"- ''"]))
            elif op == "dup-line":
                line = line + b"\n" + line
            elif op == "indent":
                line = b" " * draw(st.integers(0, 6)) + line.lstrip(b" ")
            lines[n] = line
            data = b"\n".join(lines)
    return data


override_keys = st.lists(st.one_of(st.sampled_from(KEYS), st.sampled_from(["0", "1", "9", "-1", "ops.0"]),
                                   st.text(max_size=6)), min_size=1, max_size=4).map(".".join)
override_values = st.one_of(st.sampled_from(JUNK + WORDS), st.text(max_size=20),
                            st.integers(-2**40, 2**40).map(str),
                            values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))
overrides = st.lists(st.one_of(st.tuples(override_keys, override_values).map("=".join), st.text(max_size=30)),
                     min_size=1, max_size=3)


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


# -- the campaigns -----------------------------------------------------------------------
# Sizes add up to 5,400 documents: about 20 s of CPU (40 s on a 2-core machine busy with a lab run).
SIZES = {"structured": 700, "scenario_mutations": 1900, "topology_mutations": 1300, "raw_bytes": 500,
         "overrides": 1000}


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[Campaign]:
    # Rewriting a file on a disk filesystem costs ~3 ms here (ext4 flushes a truncated file on
    # close); on tmpfs it is free, so the documents go to /dev/shm where there is one.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(prefix="hil-fuzz-", dir=shm) as d:
            yield Campaign(Path(d))
    else:
        yield Campaign(tmp_path)


def test_fuzz_structured_documents(campaign: Campaign) -> None:
    @fuzz_settings(SIZES["structured"])
    @given(structured())
    def one(doc: bytes) -> None:
        campaign.run(doc)
    one()
    campaign.check(SIZES["structured"])


def test_fuzz_scenario_mutations(campaign: Campaign) -> None:
    @fuzz_settings(SIZES["scenario_mutations"])
    @given(st.sampled_from(SOURCES_S).flatmap(lambda s: mutations(s, most=4)))
    def one(doc: bytes) -> None:
        campaign.run(doc)
    one()
    campaign.check(SIZES["scenario_mutations"])


def test_fuzz_topology_mutations(campaign: Campaign) -> None:
    @fuzz_settings(SIZES["topology_mutations"])
    @given(st.sampled_from(SOURCES_T).flatmap(lambda s: mutations(s, most=4)))
    def one(doc: bytes) -> None:
        campaign.run(b"topology: @TOPO@\n" + WL.encode(), topology=doc)
    one()
    campaign.check(SIZES["topology_mutations"])


def test_fuzz_raw_bytes(campaign: Campaign) -> None:
    @fuzz_settings(SIZES["raw_bytes"])
    @given(st.one_of(st.binary(max_size=600),
                     st.binary(max_size=60).map(lambda b: b"topology: nested-svm\n" + b + b"\n" + WL.encode())))
    def one(doc: bytes) -> None:
        campaign.run(doc)
    one()
    campaign.check(SIZES["raw_bytes"])


LAUGHS = "[" + ", ".join(["&a0 [" + ",".join(["lol"] * 10) + "]"] + [
    f"&a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]) + "]"   # 10**5 strings


def test_fuzz_set_overrides(campaign: Campaign) -> None:
    @fuzz_settings(SIZES["overrides"])
    @example(SOURCES_S[0], ["description=" + LAUGHS])
    @example(SOURCES_S[0], ["workload.ops.0=null"])
    @example(SOURCES_S[0], ["description=!!int x"])
    @given(st.sampled_from(SOURCES_S), overrides)
    def one(doc: bytes, sets: list[str]) -> None:
        campaign.run(doc, overrides=sets)
    one()
    campaign.check(SIZES["overrides"])
