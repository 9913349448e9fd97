"""report.html and index.html: self-contained pages with the plots a run has data for."""
import re
from pathlib import Path

from hil.report import html
from hil.report.json import write
from tests.unit.report.results import doc, probe_result, real


def plots(page: str) -> list[str]:
    return re.findall(r'<img class="plot" data-plot="([a-z-]+)" alt="[^"]*" src="data:image/(?:png|svg\+xml);base64,', page)


def test_one_exits_plot_per_case_with_rows_and_nothing_fetched():
    d = doc(probe_result(), elapsed_seconds=3.0)
    page = html.render(d)
    assert plots(page) == ["exits"] * len([c for c in d["cases"] if c["rows"]])
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert ">PASS<" in page and "1cda2b7a7afc8209d77fe7de" in page      # verdict and provenance


def test_latency_gets_a_histogram_and_its_absence_none():
    with_latency = html.render(doc(probe_result(samples={"cpuid": [1000.0 + 90 * (i % 7) for i in range(64)]})))
    assert plots(with_latency).count("latency") == 1       # the summary, not the raw stamps
    assert "cpuid lat latency" in with_latency
    assert "latency" not in plots(html.render(doc(probe_result())))
    d = doc(probe_result())
    d["measurement"]["ops"][0]["latency_ns"] = [5.0, 6.0, 9.0]   # a plain list of samples
    assert plots(html.render(d)).count("latency") == 1


def test_the_models_latency_band_is_shaded_over_the_ops_distribution(monkeypatch):
    from hil.report import plots as plots_module
    seen = []
    real_plot = plots_module.latency_buckets
    monkeypatch.setattr(plots_module, "latency_buckets",
                        lambda title, stats, predicted=None: seen.append(predicted) or real_plot(title, stats, predicted))
    d = doc(probe_result(samples={"cpuid": [1000.0 + 90 * (i % 7) for i in range(64)]}))
    band = {"lat": {"low": 500.0, "high": 4000.0, "nominal": 1100.0}}
    d["cases"].append({"name": "cpuid latency", "verdict": "PASS", "detail": "", "rows": [],
                       "extra": {"op": "cpuid", "predicted_ns": band}})
    html.render(d)
    assert seen == [band["lat"]]
    seen.clear()
    html.render(doc(probe_result(samples={"cpuid": [1000.0] * 8})))
    assert seen == [None]                 # no latency case: nothing predicted to shade


def test_kick_ops_get_host_interrupts_per_cpu():
    page = html.render(real("kicks-io-thread"))
    assert plots(page) == ["exits", "host-interrupts", "exits", "exits"]


def test_a_mismatch_is_marked_and_text_is_escaped():
    r = probe_result(extra={"cpuid": {"cpuid": 1}})
    r.cases[0].detail = "<script>alert(1)</script>"
    page = html.render(doc(r))
    assert ">FAIL<" in page and "MISMATCH" in page and 'class="bad"' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page


def test_logs_link_relative_to_the_page(tmp_path):
    (tmp_path / "l1-console.log").write_text("boot\n")
    (tmp_path / "repro.sh").write_text("#!/bin/sh\n")
    r = probe_result()
    r.logs = {"l1_console": str(tmp_path / "l1-console.log"), "repro": str(tmp_path / "repro.sh")}
    html.write(tmp_path / "report.html", doc(r))
    page = (tmp_path / "report.html").read_text()
    assert 'href="l1-console.log"' in page and 'href="repro.sh"' in page


def test_an_error_result_still_renders_its_error():
    from hil.verdict import error_result
    page = html.render(doc(error_result("probe-basic", "L1 did not boot: agent silent for 180 s")))
    assert ">ERROR<" in page and "agent silent for 180 s" in page and plots(page) == []


def test_the_index_links_every_report(tmp_path):
    results = []
    for name, r in (("a", probe_result()), ("b", probe_result(extra={"msr": {"msr": 2}}))):
        (tmp_path / name).mkdir()
        write(tmp_path / name / "result.json", r)
        html.write(tmp_path / name / "report.html", doc(r))
        results.append(tmp_path / name / "result.json")
    index = html.write_index(tmp_path, results).read_text()
    assert 'href="a/report.html"' in index and 'href="b/report.html"' in index
    assert re.search(r"<h1>hil runs <span class=\"FAIL\">FAIL</span></h1>", index)


def test_hil_report_renders_old_results_again_with_an_index(tmp_path):
    import shutil
    import subprocess
    import sys
    from tests.unit.report.results import DATA
    for name in ("probe-basic", "kicks-io-thread"):
        (tmp_path / name).mkdir()
        shutil.copy(DATA / f"{name}.result.json", tmp_path / name / "result.json")
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "report", str(tmp_path), "--index", str(tmp_path)],
                          cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "probe-basic" / "report.html").is_file()
    index = (tmp_path / "index.html").read_text()
    assert 'href="kicks-io-thread/report.html"' in index and 'href="probe-basic/report.html"' in index
