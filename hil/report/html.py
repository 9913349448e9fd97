"""report.html: one self-contained page per run (plots embedded as SVG or PNG data URIs, no script,
no fetch) a person reads, and an index page over several runs. Both read the result.json
document (a dict), so an old result can be rendered again."""
from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hil.report import svg


CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}code{font-size:12px;word-break:break-all}
.PASS{color:#1a7f37;font-weight:bold}.FAIL{color:#c0392b;font-weight:bold}.ERROR{color:#b35900;font-weight:bold}
.SKIP{color:#777;font-weight:bold}.bad{background:#fde2e2}.muted{color:#888}img.plot{margin:4px;border:1px solid #eee}
.detail{white-space:pre-wrap}"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def img(image: bytes | str, alt: str, kind: str) -> str:
    """An embedded plot: PNG bytes, or SVG text."""
    mime = "image/svg+xml" if isinstance(image, str) else "image/png"
    data = base64.b64encode(image.encode() if isinstance(image, str) else image).decode("ascii")
    return f'<img class="plot" data-plot="{esc(kind)}" alt="{esc(alt)}" src="data:{mime};base64,{data}">'


def verdict_span(v: str) -> str:
    return f'<span class="{esc(v)}">{esc(v)}</span>'


def table(head: Sequence[str], rows: Iterable[Sequence[str]], row_class: Sequence[str] = ()) -> str:
    cls = list(row_class)
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        c = f' class="{cls[i]}"' if i < len(cls) and cls[i] else ""
        out.append(f"<tr{c}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "".join(out) + "</table>"


def show_bound(b: Mapping[str, Any]) -> str:
    low, high = b.get("low"), b.get("high")
    return str(low) if high is not None and low == high else f"{low}..{'inf' if high is None else high}"


def _href(path: str, base: Path | None) -> str:
    """A link that still works when the output directory is moved: relative when inside it."""
    p = Path(path)
    if base is not None:
        try:
            return Path(os.path.relpath(p, base)).as_posix() if p.is_absolute() else p.as_posix()
        except ValueError:
            pass
    return p.as_uri() if p.is_absolute() else p.as_posix()


def _latency_plots(op: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """(title, PNG) per latency distribution an op measurement carries: `latency` as the lab
    summarises it (kind -> {n, p50, p99, histogram of ns buckets, ...}), or a plain list of
    samples under a key naming latency. Raw `samples` stamps (TSC or ns as the probe printed
    them, not all of them latencies) are not plotted."""
    import importlib
    out = []
    predicted = op.get("latency_predicted") or {}
    for key, value in op.items():
        name = f"{op.get('op')}: {key}"
        if isinstance(value, dict):
            for kind, stats in value.items():
                if isinstance(stats, dict) and isinstance(stats.get("histogram"), list) and stats["histogram"]:
                    title = f"{op.get('op')} {kind} latency"
                    plots = importlib.import_module("hil.report.plots")    # matplotlib: only when drawn
                    out.append((title, plots.latency_buckets(title, stats, predicted.get(kind))))
        elif "latenc" in key and isinstance(value, list) and value and \
                all(isinstance(v, (int, float)) for v in value):
            unit = key.rsplit("_", 1)[1] if key.endswith(("_ns", "_us", "_cycles")) else "latency"
            plots = importlib.import_module("hil.report.plots")
            out.append((name, plots.histogram(name, [float(v) for v in value], unit)))
    return out


def _case_section(case: Mapping[str, Any], ops: Mapping[str, Mapping[str, Any]],
                  host_irqs: Mapping[str, Any]) -> str:
    name = str(case["name"])
    parts = [f'<h2 id="case-{esc(name)}">{esc(name)} {verdict_span(case["verdict"])}</h2>']
    if case.get("detail"):
        parts.append(f'<p class="detail">{esc(case["detail"])}</p>')
    rows = case.get("rows") or []
    if rows:
        cross_check = name == "kvm-counters"
        head = ("check", "KVM counter", "tracepoint", "") if cross_check else ("reason", "predicted", "measured", "")
        parts.append(table(head, [(esc(r["reason"]), esc(show_bound(r["predicted"])), esc(r["measured"]),
                                   ("ok" if r["ok"] else "MISMATCH") if r.get("judged", True) else "(not judged)")
                                  for r in rows],
                           ["" if r["ok"] else "bad" for r in rows]))
        parts.append(img(svg.exits_vs_bounds(f"{name}: {'counter vs tracepoint' if cross_check else 'exits'}",
                                               rows), f"{name} measured vs predicted", "exits"))
    op = ops.get(name)
    if op:
        for title, png in _latency_plots(op):
            parts.append(img(png, title, "latency"))
    by_kind = host_irqs.get(name)
    if by_kind:
        from hil.report import plots     # matplotlib loads in about a second: only when such a plot is drawn
        parts.append(img(plots.per_cpu(f"{name}: host interrupts per L1 CPU", by_kind),
                         f"{name} host interrupts per CPU", "host-interrupts"))
    return "\n".join(parts)


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and depth < 2 and value:
        return [kv for k, v in value.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)]
    return [(prefix, value)]


def _value_cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= 160:
        return f"<code>{esc(text)}</code>"
    return f"<details><summary><code>{esc(text[:120])}…</code></summary><code>{esc(text)}</code></details>"


def render(doc: Mapping[str, Any], base: Path | None = None) -> str:
    """The page of one result.json document; `base` is the directory the page is written to."""
    m = doc.get("measurement") or {}
    ops = {o.get("op"): o for o in m.get("ops") or []}
    for c in doc.get("cases") or []:      # the model's latency band, shaded over the op's distribution
        x = c.get("extra") or {}
        if isinstance(x.get("predicted_ns"), dict) and x.get("op") in ops:
            ops[x["op"]] = {**ops[x["op"]], "latency_predicted": x["predicted_ns"]}
    host_irqs = (m.get("kick_trace") or {}).get("host_interrupts_per_op") or {}
    accel = (doc.get("provenance") or {}).get("accel") or {}
    head = [f"<h1>hil: {esc(doc['scenario'])} {verdict_span(doc['verdict'])}</h1>",
            table(("", ""), [("profile", esc(doc.get("profile") or "-")), ("arch", esc(doc.get("arch") or "-")),
                             ("accelerator", esc(f"{accel.get('accel', '-')} ({accel.get('reason', '')})")),
                             ("elapsed", esc(f"{doc['elapsed_seconds']:.1f} s") if "elapsed_seconds" in doc else "-"),
                             ("schema", esc(doc.get("schema_version", 0)))])]
    if doc.get("error"):
        head.append(f'<p class="detail">{verdict_span(doc["verdict"])}: {esc(doc["error"])}</p>')
    summary = table(("case", "verdict", "detail"),
                    [(f'<a href="#case-{esc(c["name"])}">{esc(c["name"])}</a>', verdict_span(c["verdict"]),
                      esc(c.get("detail", ""))) for c in doc["cases"]])
    cases = [_case_section(c, ops, host_irqs) for c in doc["cases"]]
    logs = doc.get("logs") or {}
    links = ("<ul>" + "".join(f'<li><a href="{esc(_href(p, base))}">{esc(k)}</a> <code>{esc(p)}</code></li>'
                              for k, p in sorted(logs.items())) + "</ul>") if logs else \
        '<p class="muted">no logs kept (hil run --out DIR or --keep keeps them)</p>'
    prov = table(("key", "value"), [(esc(k), _value_cell(v)) for k, v in _flatten(doc.get("provenance") or {})])
    body = "\n".join(head + ["<h2>Cases</h2>", summary, *cases, "<h2>Logs and repro</h2>", links,
                             "<h2>Provenance</h2>", prov])
    return page(f"hil {doc['scenario']} {doc['verdict']}", body)


def write(path: Path, doc: Mapping[str, Any]) -> None:
    from hil.report.json import write_text
    write_text(path, render(doc, path.parent))


def index(entries: Sequence[tuple[Mapping[str, Any], str]], title: str = "hil runs") -> str:
    """One row per run: (result document, link to its report.html relative to the index)."""
    rows = []
    for doc, href in entries:
        counts: dict[str, int] = {}
        for c in doc["cases"]:
            counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
        rows.append((f'<a href="{esc(href)}">{esc(doc["scenario"])}</a>', verdict_span(doc["verdict"]),
                     esc(doc.get("profile") or "-"), esc(", ".join(f"{n} {v.lower()}" for v, n in sorted(counts.items()))),
                     esc(f"{doc['elapsed_seconds']:.1f} s" if "elapsed_seconds" in doc else "-"),
                     esc(doc.get("error", ""))))
    worst = next((v for v in ("ERROR", "FAIL", "SKIP", "PASS") if any(d["verdict"] == v for d, _ in entries)), "PASS")
    body = (f"<h1>{esc(title)} {verdict_span(worst)}</h1>" +
            table(("scenario", "verdict", "profile", "cases", "elapsed", "error"), rows))
    return page(title, body)


def write_index(directory: Path, results: Sequence[Path], title: str = "hil runs") -> Path:
    """index.html in `directory` over the given result.json files (each with its report.html beside it)."""
    from hil.report.json import load, write_text
    entries = []
    for path in results:
        report = path.with_name("report.html")
        entries.append((load(path), os.path.relpath(report if report.exists() else path, directory)))
    out = directory / "index.html"
    write_text(out, index(entries, title))
    return out
