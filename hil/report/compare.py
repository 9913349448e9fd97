"""`hil compare A B`: two results (or two directories of them: two kernels, two nights, stock
vs a series) side by side, per scenario, case and reason. A delta is marked when B leaves the
model's bound or the user's tolerance; a changed count the model predicts exactly is a
regression, so the exit code can drive `git bisect run`."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hil.model.latency import P50_DRIFT
from hil.report.json import ResultFileError, load

# cases whose "predicted" is not the model's: kvm-counters holds KVM's own counter, which
# differs from run to run
CROSS_CHECKS = frozenset({"kvm-counters"})


@dataclass(frozen=True)
class Tolerance:
    """Allowed |B - A|: an absolute count, or a fraction of A (`10%`)."""
    absolute: int | None = None
    fraction: float | None = None

    @staticmethod
    def parse(text: str) -> "Tolerance":
        try:
            if text.endswith("%"):
                value = float(text[:-1])
                if value < 0:
                    raise ValueError
                return Tolerance(fraction=value / 100)
            n = int(text)
            if n < 0:
                raise ValueError
            return Tolerance(absolute=n)
        except ValueError:
            raise ValueError(f"--tolerance {text!r}: expected a count (e.g. 2) or a percentage (e.g. 10%)") from None

    def allows(self, a: int, b: int) -> bool:
        if self.absolute is not None:
            return abs(b - a) <= self.absolute
        if self.fraction is not None:
            return abs(b - a) <= self.fraction * abs(a)
        return True

    def __str__(self) -> str:
        return f"{self.fraction * 100:g}%" if self.fraction is not None else str(self.absolute)


@dataclass
class Delta:
    scenario: str
    case: str
    reason: str
    a: int | None
    b: int | None
    predicted_a: str
    predicted_b: str
    deterministic: bool          # the model predicts one exact count (on either side)
    # changed-exact | outside-bounds | over-tolerance | prediction-changed | only-in-a/b
    marks: list[str] = field(default_factory=list)

    @property
    def delta(self) -> int | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class LatencyOrder:
    """One op's latency on both sides: the model's nominal p50 says which side is faster (or
    neither is slower); the measured p50s must not contradict it by more than the band's drift."""
    op: str
    scenarios: tuple[str, str]
    profiles: tuple[str, str]
    predicted_ns: tuple[float, float]
    measured_ns: tuple[float, float]
    ok: bool
    # the nominal paths in cycles: the same costs give equal paths equal figures (ns differ by
    # each run's own TSC rate)
    predicted_cycles: tuple[int, int] = (0, 0)

    def text(self) -> str:
        pa, pb = self.predicted_ns
        ma, mb = self.measured_ns
        sign = "==" if self.predicted_cycles[0] == self.predicted_cycles[1] else \
            "<" if self.predicted_cycles[1] < self.predicted_cycles[0] else ">"
        return (f"latency order {self.op}: model B {sign} A ({self.profiles[1]} {pb / 1000:.1f} us, "
                f"{self.profiles[0]} {pa / 1000:.1f} us); measured p50 A {ma / 1000:.1f} us, B {mb / 1000:.1f} us "
                f"(allowed {P50_DRIFT:g}x drift): {'held' if self.ok else 'BROKEN'}")


def _latency_cases(doc: Mapping[str, Any]) -> dict[str, tuple[float, float, int]]:
    """op -> (the model's nominal p50 ns, the measured p50 ns, the nominal in cycles), of the
    latency cases judged."""
    out = {}
    for c in doc.get("cases") or []:
        x = c.get("extra") or {}
        if x.get("op") and isinstance(x.get("band_ns"), dict) and c.get("rows"):
            out[x["op"]] = (float(x["band_ns"]["nominal"]), float(c["rows"][0]["measured"]),
                            int((x.get("band_cycles") or {}).get("nominal", x["band_ns"]["nominal"])))
    return out


def latency_orders(a: Mapping[str, dict[str, Any]], b: Mapping[str, dict[str, Any]]) -> list[LatencyOrder]:
    """Pairs of results by scenario name, or the one result of each side when they share no
    name (stock vs dedicated: two scenarios), and in each pair every op with a judged latency."""
    shared = sorted(set(a) & set(b))
    pairs = [(a[n], b[n]) for n in shared] or ([(next(iter(a.values())), next(iter(b.values())))]
                                              if len(a) == len(b) == 1 else [])
    out = []
    for da, db in pairs:
        la, lb = _latency_cases(da), _latency_cases(db)
        for op in sorted(set(la) & set(lb)):
            (pa, ma, ca), (pb, mb, cb) = la[op], lb[op]
            # the side the model says is no slower may not be slower by more than the drift;
            # where it predicts the same path, neither side may
            ok = (mb <= ma * P50_DRIFT or cb > ca) and (ma <= mb * P50_DRIFT or ca > cb)
            out.append(LatencyOrder(op, (da["scenario"], db["scenario"]), (da.get("profile", ""), db.get("profile", "")),
                                    (pa, pb), (ma, mb), ok, (ca, cb)))
    return out


@dataclass
class Comparison:
    a: str
    b: str
    tolerance: str
    deltas: list[Delta]
    verdicts: list[dict[str, str]]            # scenario, a, b
    incomparable: list[str]                   # scenarios on one side only, or ERROR/SKIP on either
    orders: list[LatencyOrder] | None = None  # --latency-order: None when not asked

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if "changed-exact" in d.marks or "over-tolerance" in d.marks]

    @property
    def exit_code(self) -> int:
        """1: an exact count changed (or a --tolerance was exceeded); 2: nothing could be compared
        for some scenario (missing, ERROR or SKIP on a side); 0 otherwise."""
        if self.regressions or any(not o.ok for o in self.orders or []):
            return 1
        if self.orders is not None and not self.orders:
            return 2        # asked to judge an order, and no op had a judged latency on both sides
        return 2 if self.incomparable else 0

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "tolerance": self.tolerance, "exit_code": self.exit_code,
                "verdicts": self.verdicts, "incomparable": self.incomparable,
                "regressions": [f"{d.scenario}/{d.case}/{d.reason}" for d in self.regressions],
                "deltas": [asdict(d) | {"delta": d.delta} for d in self.deltas],
                **({"latency_order": [asdict(o) for o in self.orders]} if self.orders is not None else {})}


def load_side(path: Path) -> dict[str, dict[str, Any]]:
    """scenario -> result document, from a result.json or a directory holding them (searched
    recursively: a batch's per-scenario directories)."""
    if path.is_dir():
        files = sorted(path.rglob("result.json"))
        if not files:
            raise ResultFileError(f"{path}: no result.json in this directory")
    elif path.exists():
        files = [path]
    else:
        raise ResultFileError(f"{path}: no such file or directory")
    side: dict[str, dict[str, Any]] = {}
    for f in files:
        doc = load(f)
        if doc["scenario"] in side:
            raise ResultFileError(f"{f}: a second result of scenario {doc['scenario']!r} in {path}")
        side[doc["scenario"]] = doc
    return side


def _bound_text(b: Mapping[str, Any] | None) -> str:
    if b is None:
        return "-"
    low, high = b["low"], b["high"]
    return str(low) if high is not None and low == high else f"{low}..{'inf' if high is None else high}"


def _inside(b: Mapping[str, Any], n: int) -> bool:
    return n >= b["low"] and (b["high"] is None or n <= b["high"])


def _rows(doc: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["name"], r["reason"]): r for c in doc["cases"] for r in c["rows"]}


def compare(a: Mapping[str, dict[str, Any]], b: Mapping[str, dict[str, Any]], tolerance: Tolerance | None = None,
            names: tuple[str, str] = ("A", "B"), latency_order: bool = False) -> Comparison:
    tolerance = tolerance or Tolerance()
    deltas: list[Delta] = []
    verdicts, incomparable = [], []
    for scenario in sorted(set(a) | set(b)):
        da, db = a.get(scenario), b.get(scenario)
        verdicts.append({"scenario": scenario, "a": da["verdict"] if da else "-", "b": db["verdict"] if db else "-"})
        if da is None or db is None:
            incomparable.append(f"{scenario}: only in {names[0] if db is None else names[1]}")
            continue
        broken = [f"{n} {d['verdict']} ({d.get('error') or 'no error text'})" for n, d in zip(names, (da, db))
                  if d["verdict"] in ("ERROR", "SKIP") and any(c["name"] == "lab" for c in d["cases"])]
        if broken:
            incomparable.append(f"{scenario}: {'; '.join(broken)}")
            continue
        ra, rb = _rows(da), _rows(db)
        for key in sorted(set(ra) | set(rb), key=lambda k: ([c["name"] for c in da["cases"] + db["cases"]].index(k[0]), k[1])):
            case, reason = key
            xa, xb = ra.get(key), rb.get(key)
            pa, pb = (xa or {}).get("predicted"), (xb or {}).get("predicted")
            exact = case not in CROSS_CHECKS and any(
                p is not None and p["high"] is not None and p["low"] == p["high"] for p in (pa, pb))
            d = Delta(scenario, case, reason, xa["measured"] if xa else None, xb["measured"] if xb else None,
                      _bound_text(pa), _bound_text(pb), exact)
            if case not in CROSS_CHECKS and pa is not None and pb is not None and pa != pb:
                d.marks.append("prediction-changed")     # the inputs differ (a count, a profile)
            if xa is None or xb is None:
                d.marks.append("only-in-a" if xb is None else "only-in-b")
                if exact:
                    d.marks.append("changed-exact")
            else:
                if exact and d.a != d.b:
                    d.marks.append("changed-exact")
                if pb is not None and case not in CROSS_CHECKS and not _inside(pb, xb["measured"]):
                    d.marks.append("outside-bounds")
                if not tolerance.allows(xa["measured"], xb["measured"]):
                    d.marks.append("over-tolerance")
            deltas.append(d)
    orders = latency_orders(a, b) if latency_order else None
    if orders and not set(a) & set(b):
        # two scenarios paired for their order (stock vs dedicated): each alone on its side is no fault
        incomparable = [t for t in incomparable if not any(t.startswith(f"{n}: only in ") for n in (*a, *b))]
    return Comparison(names[0], names[1], str(tolerance) if tolerance.absolute is not None or
                      tolerance.fraction is not None else "", deltas, verdicts, incomparable, orders)


def render_text(c: Comparison, all_rows: bool = False) -> str:
    out = [f"A: {c.a}", f"B: {c.b}"]
    for v in c.verdicts:
        out.append(f"scenario {v['scenario']}: A {v['a']}  B {v['b']}")
    widths = (20, 16, 30, 10, 10, 8, 12)
    head = ("scenario", "case", "reason", "A", "B", "delta", "predicted")
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  marks")
    shown = [d for d in c.deltas if all_rows or d.marks or d.delta]
    for d in shown:
        pred = d.predicted_b if d.predicted_a == d.predicted_b else f"{d.predicted_a}->{d.predicted_b}"
        delta = "-" if d.delta is None else f"{d.delta:+d}"
        cells = (d.scenario, d.case, d.reason, "-" if d.a is None else str(d.a), "-" if d.b is None else str(d.b),
                 delta, pred)
        out.append("  ".join(x.ljust(w) for x, w in zip(cells, widths)) + "  " + " ".join(d.marks))
    if not shown:
        out.append(f"(no differences in {len(c.deltas)} compared counts)")
    for text in c.incomparable:
        out.append(f"not compared: {text}")
    for d in c.regressions:
        what = "an exact count changed" if "changed-exact" in d.marks else f"over the tolerance {c.tolerance}"
        out.append(f"REGRESSION {d.scenario} case {d.case} reason {d.reason}: {what} "
                   f"(A {'-' if d.a is None else d.a}, B {'-' if d.b is None else d.b}, predicted {d.predicted_b})")
    if c.orders is not None:
        out += [o.text() for o in c.orders] or ["latency order: no op has a judged latency on both sides"]
    out.append(f"result: {('REGRESSION', 'INCOMPARABLE', 'SAME')[(1, 2, 0).index(c.exit_code)]}")
    return "\n".join(out)


def render_html(c: Comparison) -> str:
    from hil.report.html import esc, page, table
    rows, classes = [], []
    for d in c.deltas:
        rows.append((esc(d.scenario), esc(d.case), esc(d.reason), esc("-" if d.a is None else d.a),
                     esc("-" if d.b is None else d.b), esc("-" if d.delta is None else f"{d.delta:+d}"),
                     esc(d.predicted_a), esc(d.predicted_b), esc(" ".join(d.marks))))
        classes.append("bad" if set(d.marks) & {"changed-exact", "over-tolerance", "outside-bounds"} else
                       ("" if not d.delta else "muted"))
    verdict = ("REGRESSION", "INCOMPARABLE", "SAME")[(1, 2, 0).index(c.exit_code)]
    body = [f"<h1>hil compare: {esc(verdict)}</h1>",
            f"<p>A: <code>{esc(c.a)}</code><br>B: <code>{esc(c.b)}</code>"
            f"{'<br>tolerance ' + esc(c.tolerance) if c.tolerance else ''}</p>",
            table(("scenario", "A", "B"), [(esc(v["scenario"]), esc(v["a"]), esc(v["b"])) for v in c.verdicts])]
    if c.incomparable:
        body.append("<ul>" + "".join(f"<li>not compared: {esc(t)}</li>" for t in c.incomparable) + "</ul>")
    body.append(table(("scenario", "case", "reason", "A", "B", "delta", "predicted A", "predicted B", "marks"),
                      rows, classes))
    return page(f"hil compare {verdict}", "\n".join(body))
