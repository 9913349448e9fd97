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
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hil

from hil.lab import signals
from hil.paths import ROOT


def cmd_doctor(args: argparse.Namespace) -> int:
    from hil.lab.doctor import checks
    results = checks()
    if args.json is not None:
        emit_json(args.json, [r.__dict__ for r in results])
    if args.json != "-":
        for r in results:
            mark = "ok  " if r.ok else ("MISS" if r.required else "warn")
            line = f"[{mark}] {r.name}: {r.detail}"
            print(line + (f"\n       fix: {r.fix}" if not r.ok and r.fix else ""))
    return 0 if all(r.ok for r in results if r.required) else 2


def cmd_list(args: argparse.Namespace) -> int:
    from hil.scenario.catalog import catalog
    entries = [e for e in catalog(ROOT) if args.group is None or args.group in e.groups]
    if args.group is not None and not entries:
        from hil.scenario.catalog import groups
        print(f"hil: no scenario in group {args.group!r} (groups: {', '.join(sorted(groups(ROOT)))})",
              file=sys.stderr)
        return 2
    if args.json is not None:
        emit_json(args.json, [e.to_dict() for e in entries])
        if args.json == "-":
            return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name.ljust(width)}  [{', '.join(e.groups)}]  {e.description}")
        for need in e.needs:
            print(f"{''.ljust(width)}  needs {need}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from hil.scenario.catalog import keys
    rows = keys()
    if args.json is not None:
        emit_json(args.json, rows)
        if args.json == "-":
            return 0
    scope = None
    for r in rows:
        if r["scope"] != scope:
            scope = r["scope"]
            print(f"{scope} keys" + (" (a topology file, or topology: in a scenario)" if scope == "topology" else ""))
        default = "required" if r["required"] else f"default {json.dumps(r['default'])}"
        limits = f"; {r['limits']}" if r["limits"] else ""
        print(f"  {r['key']}  ({r['type']}, {default}{limits})")
        print(f"      {r['description']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from hil.report.compare import Tolerance, compare, load_side, render_html, render_text
    from hil.report.json import ResultFileError, write_text
    try:
        tolerance = Tolerance.parse(args.tolerance) if args.tolerance is not None else None
        a, b = load_side(Path(args.a)), load_side(Path(args.b))
    except (ValueError, ResultFileError) as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    c = compare(a, b, tolerance, (args.a, args.b), latency_order=args.latency_order)
    try:
        if args.json is not None:
            emit_json(args.json, c.to_dict())
        if args.html is not None:
            write_text(Path(args.html), render_html(c))
    except OSError as e:
        print(f"hil: cannot write the comparison: {e}", file=sys.stderr)
        return 2
    print(render_text(c, args.all), file=sys.stderr if args.json == "-" else sys.stdout)
    return c.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    """report.html again for each result (beside it), and index.html over several."""
    from hil.report import html
    from hil.report.json import ResultFileError, load
    files: list[Path] = []
    for p in map(Path, args.results):
        files += sorted(p.rglob("result.json")) if p.is_dir() else [p]
    try:
        for f in files:
            html.write(f.with_name("report.html"), load(f))
            print(f.with_name("report.html"))
        if args.index is not None:
            print(html.write_index(Path(args.index), files))
    except (ResultFileError, OSError) as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_model(rest: list[str]) -> int:
    from hil.model.cli import main as model_main
    return model_main(rest)


def cmd_kernel(rest: list[str]) -> int:
    from hil.lab.kernel.cli import main as kernel_main
    return kernel_main(rest)


def emit_json(dest: str, obj: Any) -> None:
    """--json FILE in every subcommand: the document to FILE, or to stdout for '-'."""
    text = json.dumps(obj, indent=2, default=str)
    if dest == "-":
        print(text)
        return
    from hil.report.json import write_text
    write_text(Path(dest), text + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    from hil.model import PROFILES
    from hil.runner import Runner, predict_before_boot
    from hil.scenario import ConfigError, load_scenario
    from hil.verdict import error_result

    t0 = time.monotonic()
    try:
        scenario = load_scenario(args.scenario, root=ROOT, overrides=args.set, valid_profiles=PROFILES)
        # a question the model cannot answer stops here (--host: this machine's KVM decides the arch)
        predictions = predict_before_boot(scenario, "kvm" if args.host else args.accel)
    except ConfigError as e:
        print(f"hil: {e}", file=sys.stderr)
        return 2
    explicit_out = args.out is not None
    to_stdout = args.json == "-"
    try:
        out = Path(args.out) if explicit_out else Path(tempfile.mkdtemp(prefix=f"hil-{scenario.name}-"))
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o700) if not explicit_out else None
        json_path = Path(args.json) if args.json and not to_stdout else None
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"hil: --out/--json: cannot write there: {e}", file=sys.stderr)
        return 2
    debug_log = _log_to_file(out / "hil-debug.log")
    result = None
    try:
        with Runner(accel=args.accel, host=args.host, park=not args.host) as runner:
            result = runner.run(scenario, out, predictions)
    except KeyboardInterrupt as e:
        signals.stopping()
        result = error_result(scenario.name, f"interrupted ({e})")
    finally:
        # the run is over: a stop signal from here on must not leave a result that says PASS
        # beside an exit 2; it is noticed below and the result says ERROR
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        if result is None:       # only a BaseException other than KeyboardInterrupt gets here
            result = error_result(scenario.name, "hil was stopped before the run ended")
        logging.getLogger().removeHandler(debug_log)
        debug_log.close()
    try:
        result = _written(result, scenario.name, out, json_path, explicit_out or args.keep, t0)
        stopped = signal.sigpending() & STOP_SIGNALS
        if stopped and result.exit_code != 2:
            name = signal.Signals(min(stopped)).name
            result = _written(error_result(scenario.name, f"interrupted by {name} as the result was written"),
                              scenario.name, out, json_path, True, t0)
        return _shown(result, out, args, t0)
    finally:   # a signal held meanwhile is delivered now: exit 2, as the result already says
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _written(result, name: str, out: Path, json_path: Path | None, keep_asked: bool, t0: float):
    """result.json (and junit.xml, report.html) for a finished run; the result as written."""
    from hil.report import html, json as json_report, junit
    from hil.verdict import error_result
    elapsed = round(time.monotonic() - t0, 2)
    # The output directory is kept when asked (--out, --keep) or when something went wrong; a
    # temporary one of a PASS or SKIP is deleted, and then no written result names its files.
    keep = keep_asked or result.exit_code in (1, 2)
    if keep:
        result.logs = {**result.logs, "debug": str(out / "hil-debug.log")}
    try:
        doc = json_report.document(result, elapsed_seconds=elapsed)
        if keep:
            out.mkdir(parents=True, exist_ok=True)
            json_report.write_text(out / "result.json", json.dumps(doc, indent=2, default=str))
            (out / "junit.xml").write_text(junit.render(doc))
            try:
                html.write(out / "report.html", doc)
            except Exception as e:      # a plotting bug must not lose the run's verdict
                # no traceback for a disk error or a box without matplotlib (hil run --host on a
                # minimal lab box): result.json and junit.xml are the result
                logging.getLogger(__name__).warning("report.html not written: %s: %s", type(e).__name__, e,
                                                    exc_info=e if not isinstance(e, (OSError, ImportError)) else None)
        else:
            shutil.rmtree(out, ignore_errors=True)
            doc = json_report.document(result, elapsed_seconds=elapsed)
        if json_path is not None:
            json_report.write_text(json_path, json.dumps(doc, indent=2, default=str))
    except OSError as e:          # a full disk: the path, not just the errno
        where = e.filename or json_path or out / "result.json"
        print(f"hil: cannot write the result {where}: {e.strerror or e}", file=sys.stderr)
        result = error_result(name, f"cannot write the result {where}: {e.strerror or e}")
    return result


def _shown(result, out: Path, args: argparse.Namespace, t0: float) -> int:
    from hil.report import json as json_report, text
    elapsed = round(time.monotonic() - t0, 2)
    keep = args.out is not None or args.keep or result.exit_code in (1, 2)
    to_stdout = args.json == "-"
    json_path = Path(args.json) if args.json and not to_stdout else None
    doc = json_report.document(result, elapsed_seconds=elapsed)
    _stop_display()
    human = sys.stderr if to_stdout else sys.stdout
    print(text.render(result), file=human)
    if keep:
        print(f"report: {out / 'report.html'}  (result.json, junit.xml, logs and repro.sh beside it)", file=human)
    elif json_path is not None:
        print(f"result: {json_path}", file=human)
    print(f"elapsed {elapsed:.1f} s", file=human)
    if to_stdout:
        print(json.dumps(doc, indent=2, default=str))
    return result.exit_code


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run the calibrate scenario, then write the host profile it measured."""
    from hil.calibrate import SCENARIO, CalibrationError, SpeedChanged, profile_text
    from hil.report.json import ResultFileError, load
    from hil.paths import user_host_profile
    output = Path(args.output) if args.output else user_host_profile()
    if args.output and output.exists() and not args.force:
        print(f"hil calibrate: {output} exists (--force to replace it)", file=sys.stderr)
        return 2
    if args.attempts < 1:
        print(f"hil calibrate: --attempts {args.attempts}: at least 1", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="hil-calibrate-"))
    args.scenario, args.keep, args.host = SCENARIO, True, False
    for attempt in range(1, args.attempts + 1):
        args.out = str(out)
        code = cmd_run(args)
        try:
            text, table = profile_text(load(out / "result.json"))
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
            break
        except SpeedChanged as e:
            if attempt == args.attempts:
                print(f"hil calibrate: {e}; {attempt} attempts", file=sys.stderr)
                return code if code else 2
            refused = out.with_name(f"{out.name}.refused-{attempt}")   # its logs kept beside
            shutil.rmtree(refused, ignore_errors=True)
            out.rename(refused)
            print(f"hil calibrate: attempt {attempt} refused, measuring again: {e} (its run: {refused})",
                  file=sys.stderr)
        except (CalibrationError, ResultFileError, OSError) as e:
            print(f"hil calibrate: {e}", file=sys.stderr)
            return code if code else 2
    print(f"{table}\nhost profile: {output}  (hil run SCENARIO --host-profile {output})")
    return 0


def cmd_run_or_batch(args: argparse.Namespace) -> int:
    if args.group or len(args.scenario) != 1 or args.repeat != 1 or args.kernel or args.no_wait:
        from hil.batch import cmd_batch
        return cmd_batch(args, ROOT)
    args.scenario = args.scenario[0]
    return cmd_run(args)


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
    from hil.report.progress import milestones_only
    handler.addFilter(milestones_only)          # not every redraw of a progress bar
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    return handler


_DISPLAY: Any = None


def _setup_logging(verbosity: int) -> None:
    """stderr: stage lines (INFO) by default, -v debug, -q warnings only (hil/report/progress.py)."""
    global _DISPLAY
    from hil.report import progress
    _DISPLAY = progress.setup(verbosity)


def _stop_display() -> None:
    """End the live status line before printing results (lines logged later still print)."""
    global _DISPLAY
    if _DISPLAY is not None and _DISPLAY.rich:
        _DISPLAY.stop()
        from hil.report import progress
        _DISPLAY = progress.setup(-1)


def _json_option(p: argparse.ArgumentParser, what: str = "the output") -> None:
    """--json FILE means the same in every subcommand: write the JSON document to FILE; '-' or
    a bare --json writes it to stdout (the human text then goes to stderr or is left out)."""
    p.add_argument("--json", metavar="FILE", nargs="?", const="-", default=None,
                   help=f"write {what} as JSON to FILE ('-' or no FILE: stdout)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # These front ends own their own argument parsing.
    if argv and argv[0] == "model":
        return cmd_model(argv[1:])
    if argv and argv[0] == "kernel":
        signals.install()           # builds stop, their process groups and temp dirs go
        # -q/-v anywhere: progress of apt and make on stderr (a kernel build takes minutes)
        verbosity = argparse.ArgumentParser(add_help=False)
        verbosity.add_argument("-q", "--quiet", action="store_true")
        verbosity.add_argument("-v", "--verbose", action="count", default=0)
        quiet, rest = verbosity.parse_known_args(argv[1:])
        _setup_logging(-1 if quiet.quiet else quiet.verbose)
        try:
            if rest[:1] == ["build"]:
                _sweep()
            return cmd_kernel(rest)
        except KeyboardInterrupt as e:
            signals.stopping()
            _stop_display()
            print(f"hil kernel: interrupted ({e or 'SIGINT'})", file=sys.stderr)
            return 2
        finally:
            _stop_display()
    if argv and argv[0] == "lava":            # hil/lava.py: LAVA job definitions and results
        from hil.lava import main as lava_main
        return lava_main(argv[1:])
    if argv and argv[0] == "kut":             # hil/kut.py: kvm-unit-tests by their unittests.cfg names
        from hil.kut import main as kut_main
        return kut_main(argv[1:], ROOT)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="debug log on stderr")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress lines, warnings only")
    parser = argparse.ArgumentParser(prog="hil", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hil {hil.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check every capability the lab needs", parents=[common])
    _json_option(p)
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("run", help="run a scenario: boot L1, run L2, judge exits against the model",
                       parents=[common])
    p.add_argument("scenario", nargs="*", help="scenario name(s) (qemu_configs/scenarios/NAME.yaml) or path(s)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None, help="override the topology's accel")
    _json_option(p, "the result document (as OUT/result.json)")
    p.add_argument("--out", metavar="DIR", help="keep result.json, report.html, junit.xml, logs and repro.sh in DIR")
    p.add_argument("--keep", action="store_true", help="keep the temporary output directory even when the run "
                   "passes (without --out or --keep a PASS or SKIP deletes it, and the result names no logs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--topology", metavar="NAME", help="run the scenario on another topology (e.g. nested-svm-edu)")
    # batch runs (hil/batch.py): several scenarios in one lab session, one output tree
    p.add_argument("--group", metavar="NAME", help="run every scenario whose groups: has NAME (smoke, nightly, ...)")
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="run each scenario N times; FLAKY when a case's verdict changes")
    p.add_argument("--kernel", metavar="SERIES", help="run with topology.l1.series=SERIES (or l1.kernel=debian:...)")
    p.add_argument("--no-wait", action="store_true", help="exit 2 instead of waiting when another lab holds this machine")
    p.add_argument("--host", action="store_true", help="bare metal: run the L1 side (agent, L2 QEMU, tracing) on "
                   "this machine, whose own KVM is under test (root)")
    p.add_argument("--host-profile", metavar="FILE", help="the cost model's host profile for latency predictions "
                   "(a file `hil calibrate` wrote; the scenario's host_profile key)")
    p.set_defaults(func=cmd_run_or_batch)
    p = sub.add_parser("calibrate", parents=[common],
                       help="measure this lab's mechanism costs (exit, userspace exit, halt wake-up, device "
                       "interrupt delivery) and write them as a host profile")
    p.add_argument("--output", "-o", metavar="FILE", help="where to write the host profile (default: this "
                   "machine's, $XDG_CONFIG_HOME/hil/host-profile.yaml, which runs read when given no --host-profile)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--attempts", type=int, default=3, metavar="N", help="measure again, up to N runs in all, "
                   "while the host's speed changed between the calibration's ops (default 3)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default=None, help="override the topology's accel")
    p.add_argument("--out", metavar="DIR", help="keep the calibration run's result and logs in DIR")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the calibrate scenario (e.g. workload.ops.0.count=400)")
    p.set_defaults(func=cmd_calibrate, json=None, topology=None, host_profile=None)
    p = sub.add_parser("list", help="list scenarios with their groups and descriptions", parents=[common])
    p.add_argument("--group", metavar="GROUP", help="only the scenarios of this group")
    _json_option(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("schema", help="every scenario and topology key: type, default, limits, description",
                       parents=[common])
    _json_option(p)
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("compare", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="compare two results (or two directories of them) per case and reason",
                       description="Per scenario, case and reason: A's and B's measured exits and the delta.\n"
                       "Marks: changed-exact (the model predicts one exact count and the measured count\n"
                       "changed), outside-bounds (B leaves B's predicted bound), over-tolerance (|B-A| above\n"
                       "--tolerance), prediction-changed (the inputs differ: a count, a profile).\n"
                       "Exit 0: same; 1: changed-exact or over-tolerance (git bisect run: bad); 2: a scenario\n"
                       "could not be compared (on one side only, or ERROR/SKIP) or bad input.")
    p.add_argument("a", help="result.json, or a directory searched for result.json files")
    p.add_argument("b", help="the same, for the other side")
    p.add_argument("--tolerance", metavar="N|P%", help="allowed |B-A| per reason: a count or a percentage of A")
    p.add_argument("--all", action="store_true", help="list unchanged counts too")
    p.add_argument("--latency-order", action="store_true",
                   help="judge each op's latency order: where the model predicts B no slower than A (e.g. a "
                   "dedicated profile vs stock), B's measured p50 may exceed A's by the band's drift at most; where "
                   "it predicts the same path, neither side's may (exit 1 when broken)")
    _json_option(p, "the comparison")
    p.add_argument("--html", metavar="FILE", help="write the comparison as an HTML page")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("report", help="write report.html again for results, and an index over them",
                       parents=[common])
    p.add_argument("results", nargs="+", help="result.json files or directories holding them")
    p.add_argument("--index", metavar="DIR", help="also write DIR/index.html linking every report")
    p.set_defaults(func=cmd_report)
    sub.add_parser("model", help="ask the reference model (see 'hil model --help')")
    sub.add_parser("kernel", help="import and build kernel series (see 'hil kernel --help')")
    sub.add_parser("lava", help="LAVA job definitions for a lab fleet (see 'hil lava --help')")
    sub.add_parser("kut", help="run kvm-unit-tests by name as L2 (see 'hil kut --help')")
    args = parser.parse_args(argv)
    if getattr(args, "topology", None):   # --topology NAME is --set topology=NAME, first: later --set topology.KEY refine it
        args.set = [f"topology={args.topology}"] + args.set
    if getattr(args, "host_profile", None):
        args.set = [f"host_profile={args.host_profile}"] + args.set
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return _dispatch(args)
    finally:
        global _DISPLAY
        if _DISPLAY is not None:
            _DISPLAY.stop()
            _DISPLAY = None


def _dispatch(args: argparse.Namespace) -> int:
    signals.install()
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        signals.stopping()
        print("hil: interrupted", file=sys.stderr)
        return 2
    except BrokenPipeError:            # `hil list | head`: handled in entry()
        raise
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
