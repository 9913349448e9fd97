"""The exits plot as SVG: well-formed, one bar per row at its measured height, a mismatch red,
an unjudged row grey, text escaped; drawn without matplotlib."""
import subprocess
import sys
import xml.etree.ElementTree as ET

from hil.report import svg

NS = {"s": "http://www.w3.org/2000/svg"}


def row(reason, measured, low, high, ok=True, judged=True):
    return {"reason": reason, "measured": measured, "predicted": {"low": low, "high": high}, "ok": ok,
            "judged": judged}


def bars(text):
    return ET.fromstring(text).findall("s:rect[@class='bar']", NS)


def test_one_bar_per_row_scaled_to_its_count():
    rows = [row("cpuid", 16, 16, 16), row("io", 8, 0, None), row("msr", 4, 2, 6, ok=False),
            row("exits == kvm_exit[all] <x>", 0, 0, 0, judged=False)]
    text = svg.exits_vs_bounds("case: exits", rows)
    found = bars(text)
    assert len(found) == 4
    heights = [float(b.get("height")) for b in found]
    assert heights[0] == 2 * heights[1] == 4 * heights[2] > 0 and heights[3] == 0
    assert [b.get("fill") for b in found] == [svg.OK, svg.OK, svg.BAD, svg.MUTED]
    assert "&lt;x&gt;" in text and "<x>" not in text
    assert [b.find("s:title", NS).text for b in found][0] == "cpuid: 16"


def test_the_axis_covers_the_largest_bound():
    text = svg.exits_vs_bounds("t", [row("io", 1, 0, 1000)])
    labels = [int(t.text) for t in ET.fromstring(text).findall("s:text", NS) if (t.text or "").isdigit()]
    assert max(labels) >= 1000


def test_no_matplotlib_for_a_probe_report():
    code = ("import sys; from hil.report import html; from tests.unit.report.results import doc, probe_result; "
            "html.render(doc(probe_result())); print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
