"""The hil command: doctor, run, list, model, kernel."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("HIL_ROOT", Path(__file__).resolve().parent.parent))


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception so every context manager tears its QEMU down.
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_doctor(args: argparse.Namespace) -> int:
    from hil.lab.doctor import checks
    results = checks()
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        for r in results:
            mark = "ok  " if r.ok else ("MISS" if r.required else "warn")
            line = f"[{mark}] {r.name}: {r.detail}"
            print(line + (f"\n       fix: {r.fix}" if not r.ok and r.fix else ""))
    return 0 if all(r.ok for r in results if r.required) else 1


def cmd_list(args: argparse.Namespace) -> int:
    from hil.scenario import list_scenarios
    for name in list_scenarios(ROOT):
        print(name)
    return 0


def cmd_model(rest: list[str]) -> int:
    from hil.model.cli import main as model_main
    return model_main(rest)


def cmd_kernel(rest: list[str]) -> int:
    from hil.lab.kernel.cli import main as kernel_main
    return kernel_main(rest)


def cmd_run(args: argparse.Namespace) -> int:
    from hil.lab.errors import CapabilityMissing, LabError
    from hil.lab.run import run_scenario
    from hil.model import PROFILES
    from hil.report import junit, text
    from hil.scenario import ConfigError, load_scenario
    from hil.verdict import error_result, judge, skip_result

    try:
        scenario = load_scenario(args.scenario, root=ROOT, overrides=args.set, valid_profiles=PROFILES)
    except ConfigError as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    explicit_out = args.out is not None
    out = Path(args.out) if explicit_out else Path(tempfile.mkdtemp(prefix=f"hil-{scenario.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    verdict_seconds = 0.0
    try:
        measurement = run_scenario(scenario, out, accel=args.accel)
        t_judge = time.monotonic()
        result = judge(scenario, measurement)
        verdict_seconds = time.monotonic() - t_judge
    except CapabilityMissing as e:
        result = skip_result(scenario.name, str(e))
    except (LabError, OSError) as e:
        result = error_result(scenario.name, str(e), logs=_logs(out))
    except KeyboardInterrupt as e:
        result = error_result(scenario.name, f"interrupted ({e})", logs=_logs(out))
    elapsed = time.monotonic() - t0
    print(text.render(result))
    doc = result.to_dict()
    doc["elapsed_seconds"] = round(elapsed, 2)
    doc["verdict_seconds"] = round(verdict_seconds, 4)
    json_path = Path(args.json) if args.json else out / "result.json"
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    (out / "junit.xml").write_text(junit.render(result))
    keep = explicit_out or args.keep or result.verdict.value in ("FAIL", "ERROR")
    if keep:
        print(f"logs, repro.sh and result.json: {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)
        if args.json:
            print(f"result: {json_path}")
    print(f"elapsed {elapsed:.1f} s")
    return result.exit_code


def _logs(out: Path) -> dict[str, str]:
    return {p.name: str(p) for p in sorted(out.glob("*.log"))} | (
        {"repro": str(out / "repro.sh")} if (out / "repro.sh").exists() else {})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # These front ends own their own argument parsing.
    if argv and argv[0] == "model":
        return cmd_model(argv[1:])
    if argv and argv[0] == "kernel":
        return cmd_kernel(argv[1:])
    parser = argparse.ArgumentParser(prog="hil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check every capability the lab needs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("run", help="run a scenario: boot L1, run L2, judge exits against the model")
    p.add_argument("scenario", help="scenario name (qemu_configs/scenarios/NAME.yaml) or path")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None, help="override the topology's accel")
    p.add_argument("--json", metavar="PATH", help="write the JSON result here (default OUT/result.json)")
    p.add_argument("--out", metavar="DIR", help="keep logs, repro.sh and results in DIR")
    p.add_argument("--keep", action="store_true", help="keep the output directory even when everything passes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("list", help="list scenarios")
    p.set_defaults(func=cmd_list)
    sub.add_parser("model", help="ask the reference model (see 'hil model --help')")
    sub.add_parser("kernel", help="import and build kernel series (see 'hil kernel --help')")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    return int(args.func(args))


def entry() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:            # `hil run ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    entry()
