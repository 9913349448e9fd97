"""report.html in a real browser: headless Chromium (Debian package `chromium`, installed by
scripts/setup.sh) loads the page, every plot decodes to a picture, and the console stays
clean. A control page with a broken image and a script error proves the checks can fail."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hil.report import html
from tests.unit.report.results import doc, probe_result, real

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")

# appended to a copy of the page only: the report itself has no script
PROBE = ('<script>window.addEventListener("load", () => document.body.setAttribute("data-decoded", '
         '[...document.querySelectorAll("img.plot")].map(i => i.naturalWidth > 0 ? "ok" : "broken").join(",")));'
         '</script>')


def load(page: Path, tmp: Path) -> tuple[str, str]:
    """(the DOM after load, Chromium's log) for a local page."""
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Uncaught" in line or ":CONSOLE" in line]


def checked_copy(page_html: str, path: Path) -> Path:
    path.write_text(page_html.replace("</body>", PROBE + "</body>"))
    return path


@pytest.mark.parametrize("name", ["probe", "kicks"])
def test_the_report_renders_every_plot_without_console_errors(tmp_path, name):
    d = doc(probe_result(samples={"hlt": [float(900 + 13 * (i % 11)) for i in range(40)]}), elapsed_seconds=4.2) \
        if name == "probe" else real("kicks-io-thread")
    page = html.render(d, tmp_path)
    expected = len(re.findall(r'<img class="plot"', page))
    assert expected >= 4
    dom, log = load(checked_copy(page, tmp_path / "report.html"), tmp_path)
    decoded = re.search(r'data-decoded="([^"]*)"', dom)
    assert decoded is not None, dom[:500]
    assert decoded.group(1).split(",") == ["ok"] * expected
    assert console_errors(log) == []


def test_the_checks_catch_a_broken_plot_and_a_script_error(tmp_path):
    bad = ('<!DOCTYPE html><html><body><img class="plot" src="data:image/png;base64,iVBORw0KGgo=">'
           '<script>throw new Error("boom")</script></body></html>')
    dom, log = load(checked_copy(bad, tmp_path / "bad.html"), tmp_path)
    assert 'data-decoded="broken"' in dom
    assert any("Uncaught Error: boom" in line for line in console_errors(log))
