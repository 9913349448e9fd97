"""hil model: ask the reference model one question from the command line."""
from __future__ import annotations

import argparse
import json
import sys

from hil.model.errors import ModelError
from hil.model.events import EVENTS
from hil.model.predict import predict
from hil.model.profiles import PROFILES
from hil.model.types import Operation


def _listing() -> str:
    lines = ["profiles:"]
    lines += [f"  {name:18s} {p.description}" for name, p in PROFILES.items()]
    lines.append("events:")
    for name, e in EVENTS.items():
        params = " ".join(f"{k}={'|'.join(v)}" for k, v in e.params.items())
        lines.append(f"  {name:14s} {e.doc}" + (f"  [{params}]" if params else ""))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hil model", description=__doc__)
    ap.add_argument("--list", action="store_true", help="list profiles and events")
    ap.add_argument("--profile")
    ap.add_argument("--arch", choices=("svm", "vmx"), default="svm")
    ap.add_argument("--event")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--apic", choices=("x2apic", "xapic"), default="x2apic")
    ap.add_argument("--param", action="append", default=[], metavar="K=V", help="event parameter")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    if not args.profile or not args.event:
        print("hil model: --profile and --event are required (see --list)", file=sys.stderr)
        return 2
    try:
        params = dict(p.split("=", 1) for p in args.param)
    except ValueError:
        print(f"hil model: --param takes K=V, got {args.param}", file=sys.stderr)
        return 2
    try:
        pred = predict([Operation.of(args.event, args.count, **params)], args.profile, args.arch, apic=args.apic)
    except ModelError as e:
        print(f"hil model: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(pred.to_json(), indent=2))
        return 0
    print(f"{args.count} x {args.event} under {pred.profile} ({pred.arch}, {args.apic}):")
    for reason, b in sorted(pred.exits.items()):
        print(f"  exit {reason:22s} {b.to_json()}  (handled on {pred.handled_on.get(reason, '-')})")
    for c, b in sorted(pred.counters.items()):
        print(f"  counter {c:19s} {b.to_json()}")
    print(f"  guest interrupts {pred.guest_interrupts.to_json()}, bounces {pred.bounces.to_json()}, "
          f"delivered {pred.delivered}")
    for a in pred.assumptions:
        print(f"  assumes: {a}")
    return 0
