"""hil kernel: list, show, import and build kernel series."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from hil.lab import signals
from hil.lab.assets import kernel_line
from hil.lab.errors import LabError
from hil.lab.kernel.build import build, build_on_tree, repo_root
from hil.lab.kernel.importer import import_series
from hil.lab.kernel.manifest import load_series
from hil.scenario.errors import ConfigError

EXIT_CODES = """exit codes:
  0  success
  2  error: bad input (a manifest, a series name, an mbox or folder that does not match)
     or a failure of the build or of hil itself; never a traceback
  (hil kernel has no verdicts: it never exits 1, which hil run keeps for FAIL)"""


class Interrupted(Exception):
    """SIGTERM or SIGHUP: unwind (subprocess.run kills its child, temporary dirs are removed)."""


@contextmanager
def _signals_unwind() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        signals.raise_for(signum, Interrupted(signal.Signals(signum).name), frame)
    if threading.current_thread() is not threading.main_thread():    # only the main thread may
        yield
        return
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main(argv: list[str]) -> int:
    """Exit 0 on success and 2 on any error, bad input or failure alike (see EXIT_CODES)."""
    ap = argparse.ArgumentParser(prog="hil kernel", description=__doc__, epilog=EXIT_CODES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="series in kernel_patches/")
    p = sub.add_parser("show", help="a series' manifest, validated")
    p.add_argument("series")
    p = sub.add_parser("import", help="check a user's copy (mbox or folder) against a manifest and cache it")
    p.add_argument("source", type=Path)
    p.add_argument("--series", required=True)
    p = sub.add_parser("build", help="apply a series and build its kvm modules (cached by every input)")
    p.add_argument("--series", required=True)
    p.add_argument("--base", default=None, help="which of the series' bases (default: its first), e.g. 6.12")
    p.add_argument("--release", default=None, help="target kernel release (default: from the base's image package)")
    p.add_argument("--tree", type=Path, help="upstream-based series: your prepared kernel tree (patched in place)")
    p.add_argument("--make-arg", action="append", default=[], help="extra make argument, e.g. CC=gcc-4.7")
    args = ap.parse_args(argv)     # a usage error exits 2 (argparse)
    try:
        with _signals_unwind():
            return _run(args)
    except (ConfigError, LabError) as e:
        print(f"hil kernel: {e}", file=sys.stderr)
    except OSError as e:
        print(f"hil kernel: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"hil kernel: interrupted ({e or 'SIGINT'})", file=sys.stderr)
    except Exception as e:   # noqa: BLE001 -- the contract: any failure is exit 2 with a message
        print(f"hil kernel: internal error (a bug in hil, please report it): {type(e).__name__}: {e}",
              file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    root = repo_root()
    if args.cmd == "list":
        for m in sorted((root / "kernel_patches").glob("*/series.yaml")):
            s = load_series(m.parent.name, root)
            bases = ",".join(str(b["name"]) for b in s.bases)
            print(f"{s.name:16s} {s.profile:12s} {len(s.patches):3d} patches  on {bases:10s} {s.description}")
        return 0
    series = load_series(args.series, root)
    if args.cmd == "show":
        print(json.dumps({"name": series.name, "bases": series.bases, "profile": series.profile,
                          "patches": [p.subject for p in series.patches]}, indent=2))
        return 0
    if args.cmd == "import":
        print(f"stored {import_series(series, args.source)}")
        return 0
    if args.cmd == "build":
        series = series.on_base(args.base)
    if series.base["kind"] == "upstream" or args.tree is not None:
        if args.tree is None:
            print(f"hil kernel: series {series.name} is based on {series.base['version']}: build it on your "
                  f"own tree with --tree PATH (see kernel_patches/{series.name}/README.md)", file=sys.stderr)
            return 2
        prov = build_on_tree(series, args.tree.resolve(), args.make_arg)
        print(f"built: {prov['bzImage']} ({prov['build_seconds']} s); provenance in {args.tree}/hil-provenance.json")
        return 0
    image = str(series.base.get("image_package") or "")
    if kernel_line.is_line(image):         # the base follows a line: build for its newest ABI now
        resolved = kernel_line.resolve_cached(f"debian:{image}")
        series = series.for_kernel(resolved.package, resolved.version)
    release = args.release or _release_of(str(series.base.get("image_package") or ""))
    b = build(series, release)
    print(f"{'cache hit' if b.cached else 'built'}: {b.vmlinuz or b.modules} "
          f"({b.provenance.get('build_seconds', '?')} s build)")
    return 0


def _release_of(image_package: str) -> str:
    # linux-image-6.1.0-56-amd64 -> 6.1.0-56-amd64 (Debian names the package after the release).
    if not image_package.startswith("linux-image-"):
        raise LabError(f"cannot tell the kernel release from {image_package!r}; pass --release")
    return image_package.removeprefix("linux-image-")
