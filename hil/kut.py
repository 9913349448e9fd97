"""kvm-unit-tests as its users run it: `hil kut --kut-dir DIR TEST...` (or `-g GROUP`) runs
tests by their x86/unittests.cfg names as L2, with each entry's test arguments, extra QEMU
parameters, smp, machine and timeout, on the foreign-kernel scenario (L2 = kut's PC machine
with isa-debug-exit, so the test's exit status is its verdict). All of them run in one lab
session through hil.batch; its output tree and exit codes are the batch's."""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from hil.scenario import ConfigError, Scenario, load_scenario

SCENARIO = "foreign-kernel"
_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*$")
_KEY = re.compile(r"^(?P<key>[a-z_]+)\s*=\s*(?P<value>.*)$")


@dataclass(frozen=True)
class KutTest:
    name: str
    file: str
    line: int                         # where the entry starts in unittests.cfg
    test_args: tuple[str, ...] = ()
    qemu_params: tuple[str, ...] = ()
    smp: int = 1
    machine: str | None = None
    groups: tuple[str, ...] = ()
    timeout: int | None = None
    arch: str | None = None
    accel: str | None = None
    check: tuple[str, ...] = ()


def _words(value: str, where: str) -> list[str]:
    try:
        return shlex.split(value)     # the cfg's own quoting; nothing is passed to a shell
    except ValueError as e:
        raise ConfigError(where, None, value, f"cannot split: {e}") from e


def parse_cfg(text: str, path: str = "unittests.cfg") -> dict[str, KutTest]:
    """unittests.cfg -> test name -> entry. Both spellings of the arguments are read: the old
    `extra_params = -append '...' <qemu args>` and the newer `test_args` / `qemu_params`."""
    raw: dict[str, tuple[int, dict[str, str]]] = {}
    current: dict[str, str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if m := _SECTION.match(stripped):
            current = {}
            raw[m.group("name")] = (n, current)
        elif (m := _KEY.match(stripped)) and current is not None:
            current[m.group("key")] = m.group("value").strip()
        elif current is not None and current:     # a continuation of the previous value
            last = list(current)[-1]
            current[last] += " " + stripped
    tests: dict[str, KutTest] = {}
    for name, (n, kv) in raw.items():
        where = f"{path}:{n}: [{name}]"
        if "file" not in kv:
            raise ConfigError(where, None, "", "no 'file =' in the entry")
        args = _words(kv.get("test_args", ""), f"{where} test_args")
        qemu = _words(kv.get("qemu_params", ""), f"{where} qemu_params")
        extra = _words(kv.get("extra_params", ""), f"{where} extra_params")
        while "-append" in extra:               # the old spelling carries the test arguments
            i = extra.index("-append")
            args += extra[i + 1:i + 2]
            del extra[i:i + 2]
        smp_text = kv.get("smp", "1")
        if not smp_text.isdigit():
            raise ConfigError(f"{where} smp", None, smp_text, "hil needs a number of vCPUs here")
        timeout = kv.get("timeout")
        tests[name] = KutTest(
            name=name, file=kv["file"], line=n, test_args=tuple(args), qemu_params=tuple(qemu + extra),
            smp=int(smp_text), machine=kv.get("machine") or None, groups=tuple(kv.get("groups", "").split()),
            timeout=int(timeout.rstrip("s")) if timeout and timeout.rstrip("s").isdigit() else None,
            arch=kv.get("arch"), accel=kv.get("accel"), check=tuple(kv.get("check", "").split()))
    return tests


def select(tests: dict[str, KutTest], names: list[str], group: str | None) -> list[KutTest]:
    chosen = []
    for name in names:
        if name not in tests:
            close = [t for t in tests if name in t][:5]
            raise ConfigError("hil kut", None, name, "no such test in unittests.cfg"
                              + (f" (did you mean: {', '.join(close)}?)" if close else ""))
        chosen.append(tests[name])
    if group:
        members = [t for t in tests.values() if group in t.groups and t not in chosen]
        if not members:
            groups = sorted({g for t in tests.values() for g in t.groups})
            raise ConfigError("hil kut -g", None, group, f"no test in group {group!r} (groups: {', '.join(groups)})")
        chosen += members
    if not chosen:
        raise ConfigError("hil kut", None, "", "name a test (its [section] in unittests.cfg) or a -g GROUP")
    return chosen


def _kernel(test: KutTest, kut_dir: Path) -> Path:
    kernel = kut_dir / "x86" / test.file
    if not kernel.is_file():
        raise ConfigError(f"[{test.name}] file", None, test.file,
                          f"{kernel} does not exist (build kvm-unit-tests: ./configure && make)")
    return kernel


def overrides(test: KutTest, kut_dir: Path, base: Scenario) -> list[str]:
    """--set lines that make the foreign-kernel scenario run this test as kut's x86/run would."""
    kernel = _kernel(test, kut_dir)
    l2 = base.topology.l2
    out = [f"workload.kernel={kernel}",
           f"workload.append={json.dumps(' '.join(test.test_args))}",
           f"topology.l2.smp={test.smp}",
           f"topology.l2.qemu_params={json.dumps([*l2.qemu_params, *test.qemu_params])}"]
    if test.smp > base.topology.l1.smp:      # one L1 CPU per L2 vCPU at least
        out.append(f"topology.l1.smp={test.smp}")
    if test.machine:
        out.append(f"topology.l2.machine={test.machine}")
    if test.timeout:
        out.append(f"topology.l2.timeout={test.timeout}")
    return out


def scenarios(tests: list[KutTest], kut_dir: Path, root: Path, extra: list[str]) -> list[Scenario]:
    from hil.model import PROFILES
    kernels = [_kernel(t, kut_dir) for t in tests]        # every file named before anything loads
    base = load_scenario(SCENARIO, root=root, overrides=[f"workload.kernel={kernels[0]}"])
    out = []
    for t in tests:
        sc = load_scenario(SCENARIO, root=root, overrides=overrides(t, kut_dir, base) + extra,
                           valid_profiles=PROFILES)
        out.append(replace(sc, name=f"kut-{t.name}"))
    return out


def main(argv: list[str], root: Path) -> int:
    p = argparse.ArgumentParser(prog="hil kut", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tests", nargs="*", metavar="TEST", help="test names ([sections] of x86/unittests.cfg)")
    p.add_argument("--kut-dir", type=Path, required=True, help="a built kvm-unit-tests tree")
    p.add_argument("-g", "--group", help="every test of a unittests.cfg group (e.g. vmexit)")
    p.add_argument("--list", action="store_true", help="list the tests and their groups")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None, help="L1's accelerator")
    p.add_argument("--out", metavar="DIR", help="output tree (default hil-kut-<time>)")
    p.add_argument("--repeat", type=int, default=1, metavar="N")
    p.add_argument("--kernel", metavar="SERIES", help="L1 kernel series (or debian:<line>)")
    p.add_argument("--no-wait", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    cfg = args.kut_dir / "x86" / "unittests.cfg"
    try:
        tests = parse_cfg(cfg.read_text(), str(cfg))
    except OSError as e:
        print(f"hil kut: {cfg}: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"hil kut: {e}", file=sys.stderr)
        return 2
    if args.list:
        for t in tests.values():
            print(f"{t.name:32s} {t.file:20s} smp={t.smp} groups={','.join(t.groups) or '-'} "
                  f"args={' '.join(t.test_args) or '-'}")
        return 0
    from hil.batch import kernel_overrides, run_cli
    try:
        chosen = select(tests, args.tests, args.group)
        built = scenarios(chosen, args.kut_dir.resolve(), root, kernel_overrides(args.kernel) + args.set)
    except ConfigError as e:
        print(f"hil kut: {e}", file=sys.stderr)
        return 2
    return run_cli(built, args, out_prefix="hil-kut")
