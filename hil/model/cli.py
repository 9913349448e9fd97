"""hil model: ask the reference model one question from the command line."""
from __future__ import annotations

import argparse
import json
import sys

from hil.model.errors import ModelError
from hil.model.events import EVENTS
from hil.model.predict import APIC_MODES, predict
from hil.model.profiles import PROFILES
from hil.model.types import Operation


def _listing() -> str:
    lines = ["profiles:"]
    lines += [f"  {name:18s} [{','.join(p.arches)}] {p.description}" for name, p in PROFILES.items()]
    lines.append("events:")
    for name, e in EVENTS.items():
        params = " ".join(f"{k}={'|'.join(v)}" for k, v in e.params.items())
        lines.append(f"  {name:14s} {e.doc}" + (f"  [{params}]" if params else ""))
    return "\n".join(lines)


def _params(raw: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for p in raw:
        if "=" not in p:
            raise ModelError(f"--param takes K=V, got {p!r}")
        k, v = p.split("=", 1)
        if k in params:
            raise ModelError(f"--param {k} given twice ({k}={params[k]}, {k}={v})")
        params[k] = v
    return params


def _question(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The event's parameters and the APIC mode, the two ways of naming it reconciled (an
    apic= given as --param stays a parameter: an event without one refuses it)."""
    params = _params(args.param)
    apic = params.get("apic")
    if apic is not None and args.apic is not None and apic != args.apic:
        raise ModelError(f"--apic {args.apic} and --param apic={apic} disagree")
    apic = apic or args.apic or "x2apic"
    if apic not in APIC_MODES:
        raise ModelError(f"apic={apic!r} is not one of {', '.join(APIC_MODES)}")
    return params, apic


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hil model", description=__doc__)
    ap.add_argument("--list", action="store_true", help="list profiles and events (takes no other option)")
    ap.add_argument("--profile")
    ap.add_argument("--arch", choices=("svm", "vmx"), help="required: the architecture asked about")
    ap.add_argument("--event")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--apic", choices=APIC_MODES, help="APIC mode (default x2apic); same as --param apic=")
    ap.add_argument("--param", action="append", default=[], metavar="K=V", help="event parameter")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        if args.profile or args.event or args.arch or args.param:
            print("hil model: --list takes no other option", file=sys.stderr)
            return 2
        print(_listing())
        return 0
    if not args.profile or not args.event or not args.arch:
        print("hil model: --profile, --arch and --event are required (see --list)", file=sys.stderr)
        return 2
    try:
        params, apic = _question(args)
        pred = predict([Operation.of(args.event, args.count, **params)], args.profile, args.arch, apic=apic)
    except ModelError as e:
        print(f"hil model: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(pred.to_json(), indent=2))
        return 0
    print(f"{args.count} x {args.event} under {pred.profile} ({pred.arch}, {apic}):")
    for reason, b in sorted(pred.exits.items()):
        print(f"  exit {reason:22s} {b.to_json()}  (handled on {pred.handled_on[reason]})")
    for c, b in sorted(pred.counters.items()):
        print(f"  counter {c:19s} {b.to_json()}")
    print(f"  guest interrupts {pred.guest_interrupts.to_json()}, misdelivered {pred.misdelivered.to_json()}, "
          f"bounces {pred.bounces.to_json()}, delivered {pred.delivered}")
    noise = ", ".join(f"{r} {b.to_json()}" for r, b in sorted(pred.ambient.items())) or "none"
    print(f"  of which ambient host noise: {noise} (rests on: {', '.join(pred.ambient_assumptions)})")
    for a in pred.assumptions:
        print(f"  assumes: {a}")
    return 0
