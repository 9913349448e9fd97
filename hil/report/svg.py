"""The exits plot drawn as SVG text: every report has one per case, and matplotlib costs
about a second a run (its import and a PNG per case); the rarer latency and per-CPU plots
stay in hil.report.plots."""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

OK, BAD, BOUND, MUTED, AXIS = "#2b7bb9", "#d1495b", "#222222", "#999999", "#555555"
SLOT, PLOT_H, LEFT, TOP, BOTTOM = 72, 200, 56, 52, 70


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ticks(top: float) -> list[int]:
    """About five round steps from 0 to at least top."""
    raw = max(top, 1) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [int(step * i) for i in range(int(top // step) + 2)]


def exits_vs_bounds(title: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Measured exits per reason as bars, the model's bound as a black range over each bar
    (a short bar for an exact count, an arrow up for a bound with no top); a row not judged
    is grey, a mismatch red."""
    n = len(rows)
    top = max([1] + [int(r["measured"]) for r in rows] +
              [int(r["predicted"]["high"] if r["predicted"]["high"] is not None else r["predicted"]["low"])
               for r in rows])
    ticks = _ticks(top * 1.25 + 1)
    ceiling = ticks[-1]
    label = 6.2 * max([len(str(r["reason"])) for r in rows] + [0])    # px of the longest x label
    left = max(LEFT, round(label * 0.87 - SLOT / 2 + 8))   # labels at -30 degrees reach left
    width = left + SLOT * max(n, 3) + 20
    height = TOP + PLOT_H + max(BOTTOM, round(label * 0.5 + 24))

    def y(v: float) -> float:
        return round(TOP + PLOT_H * (1 - v / ceiling), 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{_esc(title)}</text>',
           f'<rect x="{left}" y="26" width="10" height="10" fill="{OK}"/>'
           f'<text x="{left + 14}" y="35">measured</text>',
           f'<line x1="{left + 80}" y1="31" x2="{left + 96}" y2="31" stroke="{BOUND}" stroke-width="2"/>'
           f'<text x="{left + 100}" y="35">predicted bound</text>']
    for t in ticks:
        out.append(f'<line x1="{left - 4}" y1="{y(t)}" x2="{width - 20}" y2="{y(t)}" stroke="#eeeeee"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4}" text-anchor="end">{t}</text>')
    out.append(f'<line x1="{left}" y1="{TOP}" x2="{left}" y2="{TOP + PLOT_H}" stroke="{AXIS}"/>'
               f'<line x1="{left}" y1="{TOP + PLOT_H}" x2="{width - 20}" y2="{TOP + PLOT_H}" stroke="{AXIS}"/>'
               f'<text transform="translate(14,{TOP + PLOT_H / 2}) rotate(-90)" text-anchor="middle">exits</text>')
    for i, r in enumerate(rows):
        cx = left + SLOT * i + SLOT / 2
        color = (OK if r["ok"] else BAD) if r.get("judged", True) else MUTED
        measured = int(r["measured"])
        out.append(f'<rect class="bar" x="{cx - SLOT * 0.3}" y="{y(measured)}" width="{SLOT * 0.6}" '
                   f'height="{round(TOP + PLOT_H - y(measured), 1)}" fill="{color}">'
                   f'<title>{_esc(r["reason"])}: {measured}</title></rect>')
        low, high = r["predicted"]["low"], r["predicted"]["high"]
        line = f'stroke="{BOUND}" stroke-width="2"'
        if high is not None and low == high:
            out.append(f'<line x1="{cx - SLOT * 0.4}" y1="{y(low)}" x2="{cx + SLOT * 0.4}" y2="{y(low)}" '
                       f'stroke="{BOUND}" stroke-width="2.5"/>')
        else:
            upper = ceiling if high is None else high
            out.append(f'<line x1="{cx}" y1="{y(low)}" x2="{cx}" y2="{y(upper)}" {line}/>'
                       f'<line x1="{cx - 8}" y1="{y(low)}" x2="{cx + 8}" y2="{y(low)}" {line}/>')
            if high is None:
                out.append(f'<path d="M{cx - 5},{y(upper) + 8} L{cx},{y(upper)} L{cx + 5},{y(upper) + 8}" '
                           f'fill="none" {line}/>')
            else:
                out.append(f'<line x1="{cx - 8}" y1="{y(high)}" x2="{cx + 8}" y2="{y(high)}" {line}/>')
        label_y = TOP + PLOT_H + 14
        out.append(f'<text transform="translate({cx},{label_y}) rotate(-30)" text-anchor="end">'
                   f'{_esc(r["reason"])}</text>')
    out.append("</svg>")
    return "".join(out)
