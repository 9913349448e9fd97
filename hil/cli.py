"""hil: run KVM interrupt-virtualization scenarios on a nested QEMU/KVM lab and judge every
VM exit against the reference model.

Exit codes (every subcommand): 0 PASS or success, 1 FAIL (the kernel contradicts the model;
`hil run` only), 2 ERROR (the lab broke, a hil bug, or bad input), 3 SKIP (a capability is
missing)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import hil

from hil.lab import signals
from hil.paths import ROOT


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
    return 0 if all(r.ok for r in results if r.required) else 2


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
    from hil.model import PROFILES
    from hil.report import json as json_report, junit, text
    from hil.runner import Runner, predict_before_boot
    from hil.scenario import ConfigError, load_scenario
    from hil.verdict import error_result

    t0 = time.monotonic()
    try:
        scenario = load_scenario(args.scenario, root=ROOT, overrides=args.set, valid_profiles=PROFILES)
        predictions = predict_before_boot(scenario, args.accel)   # a question the model cannot answer stops here
    except ConfigError as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    explicit_out = args.out is not None
    try:
        out = Path(args.out) if explicit_out else Path(tempfile.mkdtemp(prefix=f"hil-{scenario.name}-"))
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700) if not explicit_out else None
        json_path = Path(args.json) if args.json else out / "result.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"hil: --out/--json: cannot write there: {e}", file=sys.stderr)
        return 2
    debug_log = _log_to_file(out / "hil-debug.log")
    result = None
    try:
        with Runner(accel=args.accel) as runner:
            result = runner.run(scenario, out, predictions)
    except KeyboardInterrupt as e:
        signals.stopping()
        result = error_result(scenario.name, f"interrupted ({e})")
    finally:
        if result is None:       # only a BaseException other than KeyboardInterrupt gets here
            result = error_result(scenario.name, "hil was stopped before the run ended")
        elapsed = time.monotonic() - t0
        try:
            json_report.write(json_path, result, elapsed_seconds=round(elapsed, 2))
            if json_path != out / "result.json":
                json_report.write(out / "result.json", result, elapsed_seconds=round(elapsed, 2))
            (out / "junit.xml").write_text(junit.render(result))
        except OSError as e:          # a full disk: the path, not just the errno
            where = e.filename or json_path
            print(f"hil: cannot write the result {where}: {e.strerror or e}", file=sys.stderr)
            result = error_result(scenario.name, f"cannot write the result {where}: {e.strerror or e}")
        logging.getLogger().removeHandler(debug_log)
        debug_log.close()
    print(text.render(result))
    keep = explicit_out or args.keep or result.exit_code in (1, 2)
    if keep:
        print(f"logs, repro.sh and result.json: {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)
        if args.json:
            print(f"result: {json_path}")
    print(f"elapsed {elapsed:.1f} s")
    return result.exit_code


def _sweep() -> None:
    """Remove what a hil killed outright left (run dirs, snapshot temp files, cache temp dirs,
    orphan build processes) before building or booting anything."""
    from hil.lab.sweep import sweep
    sweep()


class _QuietFileHandler(logging.FileHandler):
    """A debug log that cannot be written (the disk is full) says so once, not with a
    traceback per message: the run goes on and its ERROR names the path."""
    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed(sys.exc_info()[1])

    def _failed(self, e: BaseException | None) -> None:
        if not self.failed:
            self.failed = True
            print(f"hil: cannot write {self.baseFilename}: {e}", file=sys.stderr)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            self._failed(e)

    def close(self) -> None:
        try:
            super().close()
        except OSError as e:
            self._failed(e)


def _log_to_file(path: Path) -> logging.Handler:
    """The run's debug log, kept beside result.json whatever the console shows."""
    handler = _QuietFileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


def _setup_logging(verbosity: int) -> None:
    """stderr: stage lines (INFO) by default, -v debug, -q warnings only; timestamps always."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s hil: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for noisy in ("qemu", "asyncio"):      # qemu.qmp logs every QMP message at DEBUG
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # These front ends own their own argument parsing.
    if argv and argv[0] == "model":
        return cmd_model(argv[1:])
    if argv and argv[0] == "kernel":
        signals.install()           # builds stop, their process groups and temp dirs go
        try:
            if argv[1:2] == ["build"]:
                _sweep()
            return cmd_kernel(argv[1:])
        except KeyboardInterrupt as e:
            signals.stopping()
            print(f"hil kernel: interrupted ({e or 'SIGINT'})", file=sys.stderr)
            return 2
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="debug log on stderr")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress lines, warnings only")
    parser = argparse.ArgumentParser(prog="hil", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hil {hil.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check every capability the lab needs", parents=[common])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("run", help="run a scenario: boot L1, run L2, judge exits against the model",
                       parents=[common])
    p.add_argument("scenario", help="scenario name (qemu_configs/scenarios/NAME.yaml) or path")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None, help="override the topology's accel")
    p.add_argument("--json", metavar="PATH", help="also write the JSON result here (always OUT/result.json)")
    p.add_argument("--out", metavar="DIR", help="keep logs, repro.sh and results in DIR")
    p.add_argument("--keep", action="store_true", help="keep the output directory even when everything passes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("list", help="list scenarios", parents=[common])
    p.set_defaults(func=cmd_list)
    sub.add_parser("model", help="ask the reference model (see 'hil model --help')")
    sub.add_parser("kernel", help="import and build kernel series (see 'hil kernel --help')")
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    signals.install()
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        signals.stopping()
        print("hil: interrupted", file=sys.stderr)
        return 2
    except Exception:                  # a bug in hil is an ERROR, never exit 1 (FAIL)
        import traceback
        print(f"hil: internal error (a bug in hil):\n{traceback.format_exc()}", file=sys.stderr)
        return 2


def entry() -> None:
    try:
        sys.exit(main())
    except KeyboardInterrupt:          # a stop signal on the way out: still exit 2, not SIGINT's death
        sys.exit(2)
    except BrokenPipeError:            # `hil run ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(2)


if __name__ == "__main__":
    entry()
