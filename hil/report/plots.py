"""The report's plots, drawn with matplotlib's object API (no pyplot state, no display) and
returned as PNG bytes to embed: nothing in a report is fetched from elsewhere."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

OK, BAD, BOUND, MUTED = "#2b7bb9", "#d1495b", "#222222", "#999999"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def exits_vs_bounds(title: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Measured exits per reason as bars, the model's bound as a black range over each bar
    (a short bar for an exact count, an arrow up for a bound with no top)."""
    n = len(rows)
    fig = Figure(figsize=(max(3.5, 1.1 * n + 1.5), 3.2))
    ax = fig.add_subplot()
    top = max([1] + [int(r["measured"]) for r in rows] +
              [int(r["predicted"]["high"] if r["predicted"]["high"] is not None else r["predicted"]["low"])
               for r in rows])
    ceiling = top * 1.25 + 1
    colors = [OK if r["ok"] else BAD for r in rows]
    colors = [c if r.get("judged", True) else MUTED for c, r in zip(colors, rows)]
    ax.bar(range(n), [r["measured"] for r in rows], color=colors, width=0.6, label="measured")
    for i, r in enumerate(rows):
        low, high = r["predicted"]["low"], r["predicted"]["high"]
        if high is not None and low == high:
            ax.hlines(low, i - 0.4, i + 0.4, colors=BOUND, linewidth=2.5)
        else:
            ax.vlines(i, low, ceiling if high is None else high, colors=BOUND, linewidth=2)
            ax.hlines(low, i - 0.15, i + 0.15, colors=BOUND, linewidth=2)
            if high is None:
                ax.annotate("", xy=(i, ceiling), xytext=(i, ceiling * 0.93),
                            arrowprops={"arrowstyle": "->", "color": BOUND})
            else:
                ax.hlines(high, i - 0.15, i + 0.15, colors=BOUND, linewidth=2)
    ax.plot([], [], color=BOUND, linewidth=2, label="predicted bound")
    tilt = n > 3 or any(len(str(r["reason"])) > 12 for r in rows)
    ax.set_xticks(range(n), [str(r["reason"]) for r in rows], rotation=30 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylim(0, ceiling * 1.05)
    ax.set_ylabel("exits")
    ax.set_title(title, pad=20)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize="small", frameon=False)
    return _png(fig)


def histogram(title: str, samples: Sequence[float], unit: str, predicted: Mapping[str, Any] | None = None) -> bytes:
    """Latency samples as a histogram; a predicted {low, high} (same unit) shaded over it."""
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    ax.hist(list(samples), bins=min(40, max(5, len(samples) // 4)), color=OK)
    if predicted:
        high = predicted.get("high")
        ax.axvspan(predicted.get("low", 0), high if high is not None else max(samples), color=BOUND, alpha=0.15,
                   label="predicted")
        ax.legend(fontsize="small", frameon=False)
    ax.set_xlabel(unit)
    ax.set_ylabel("samples")
    ax.set_title(title)
    return _png(fig)


def per_cpu(title: str, by_kind: Mapping[str, Mapping[str, int]]) -> bytes:
    """Host interrupts per L1 CPU, stacked by kind (local_timer, reschedule, ...)."""
    cpus = sorted({cpu for cpus in by_kind.values() for cpu in cpus}, key=lambda c: int(c) if c.isdigit() else 0)
    fig = Figure(figsize=(max(3.5, 1.0 * len(cpus) + 2.5), 3))
    ax = fig.add_subplot()
    bottom = [0] * len(cpus)
    for kind, counts in sorted(by_kind.items()):
        values = [int(counts.get(cpu, 0)) for cpu in cpus]
        if not any(values):
            continue
        ax.bar(range(len(cpus)), values, bottom=bottom, width=0.6, label=kind)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(cpus)), [f"CPU {c}" for c in cpus])
    ax.set_ylabel("host interrupts")
    ax.set_title(title)
    if any(bottom):
        ax.legend(fontsize="small", frameon=False)
    return _png(fig)


def latency_buckets(title: str, stats: Mapping[str, Any], predicted: Mapping[str, Any] | None = None) -> bytes:
    """A latency distribution as the lab summarises it (ns; log2 buckets {lo_ns, hi_ns, count},
    order statistics), on a log axis, with p50 and p99 marked and a predicted {low, high} shaded."""
    fig = Figure(figsize=(5.5, 3))
    ax = fig.add_subplot()
    buckets = [b for b in stats.get("histogram") or [] if b.get("count")]
    for b in buckets:
        lo = max(float(b["lo_ns"]), 1.0)
        ax.bar(lo, b["count"], width=float(b["hi_ns"]) - lo, align="edge", color=OK, edgecolor="white")
    ax.set_xscale("log")
    for q, style in (("p50", "--"), ("p99", ":")):
        if stats.get(q) is not None:
            ax.axvline(float(stats[q]), color=BOUND, linestyle=style, label=f"{q} {float(stats[q]):,.0f} ns")
    if predicted:
        high = predicted.get("high")
        ax.axvspan(max(float(predicted.get("low") or 1), 1.0),
                   float(high) if high is not None else float(stats.get("max") or 1) * 2,
                   color=BAD, alpha=0.12, label="predicted")
    ax.set_xlabel("ns")
    ax.set_ylabel("samples")
    ax.set_title(f"{title} (n={stats.get('n', sum(b['count'] for b in buckets))})")
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)
