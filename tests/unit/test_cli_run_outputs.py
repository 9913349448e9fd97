"""What `hil run` leaves behind, with the lab replaced by a fake Runner (the lab's own paths are
tested elsewhere): report.html, result.json (valid against the schema) and junit.xml in a kept
output directory; a temporary directory of a PASS deleted, and then no result names its files;
--json - puts the document on stdout and the table on stderr."""
import json
from pathlib import Path

import jsonschema
import pytest

import hil.cli as cli
import hil.runner
from hil.report import json as json_report
from tests.unit.report.results import probe_result


class FakeRunner:
    verdict_extra: dict = {}

    def __init__(self, accel=None, host=False, park=False):
        self.accel = accel

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def run(self, scenario, out, predictions=None):
        (out / "l1-console.log").write_text("L1 booted\n")
        (out / "repro.sh").write_text("#!/bin/sh\n")
        r = probe_result(extra=type(self).verdict_extra)
        r.logs = {"l1_console": str(out / "l1-console.log"), "repro": str(out / "repro.sh")}
        return r


@pytest.fixture
def fake_lab(monkeypatch, tmp_path):
    monkeypatch.setattr(hil.runner, "Runner", FakeRunner)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    FakeRunner.verdict_extra = {}
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path


def test_out_dir_gets_report_result_and_junit_whose_logs_exist(fake_lab, capsys):
    out = fake_lab / "out"
    assert cli.main(["run", "probe-basic", "--accel", "tcg", "--out", str(out)]) == 0
    doc = json.loads((out / "result.json").read_text())
    jsonschema.validate(doc, json_report.schema())
    assert doc["logs"] and all(Path(p).is_file() for p in doc["logs"].values())
    assert "debug" in doc["logs"]
    page = (out / "report.html").read_text()
    assert page.count('data-plot="exits"') == 7 and 'href="repro.sh"' in page
    assert "<testcase" in (out / "junit.xml").read_text()
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out


def test_a_pass_without_out_deletes_its_directory_and_names_no_logs(fake_lab, capsys):
    target = fake_lab / "r.json"
    assert cli.main(["run", "probe-basic", "--accel", "tcg", "--json", str(target)]) == 0
    assert list((fake_lab / "tmp").iterdir()) == []
    doc = json.loads(target.read_text())
    assert doc["verdict"] == "PASS" and doc["logs"] == {}


def test_a_fail_keeps_its_directory(fake_lab, capsys):
    FakeRunner.verdict_extra = {"cpuid": {"cpuid": 1}}
    assert cli.main(["run", "probe-basic", "--accel", "tcg"]) == 1
    kept = list((fake_lab / "tmp").iterdir())
    assert len(kept) == 1 and (kept[0] / "report.html").is_file()
    doc = json.loads((kept[0] / "result.json").read_text())
    assert all(Path(p).is_file() for p in doc["logs"].values())


def test_json_dash_puts_the_document_on_stdout_and_the_table_on_stderr(fake_lab, capsys):
    assert cli.main(["run", "probe-basic", "--accel", "tcg", "--out", str(fake_lab / "o"), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["scenario"] == "probe-basic"
    assert "result: PASS" in captured.err


def test_a_report_that_cannot_be_drawn_keeps_the_verdict(fake_lab, monkeypatch, capsys):
    from hil.report import html

    def broken(*a, **k):
        raise ValueError("a plotting bug")
    monkeypatch.setattr(html, "write", broken)
    out = fake_lab / "out"
    assert cli.main(["run", "probe-basic", "--accel", "tcg", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["verdict"] == "PASS"
    assert "report.html not written: ValueError: a plotting bug" in capsys.readouterr().err
