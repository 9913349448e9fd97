"""result.json: versioned, valid against the JSON Schema hil ships, readable back, and it
never names a log file that does not exist."""
import json

import jsonschema
import pytest

from hil.report import json as json_report
from hil.verdict import error_result, skip_result
from tests.unit.report.results import doc, probe_result, real


@pytest.fixture(scope="module")
def validator():
    schema = json_report.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("make", [
    lambda: probe_result(),
    lambda: probe_result(extra={"cpuid": {"cpuid": 1}}),           # FAIL
    lambda: error_result("probe-basic", "L1 did not boot"),
    lambda: skip_result("probe-basic", "no /dev/kvm"),
    lambda: probe_result(samples={"hlt": [900.0, 1100.0, 5000.0]}),
], ids=["pass", "fail", "error", "skip", "latency"])
def test_every_kind_of_result_validates(validator, make):
    d = doc(make(), elapsed_seconds=1.5)
    assert d["schema_version"] == json_report.SCHEMA_VERSION == 1
    validator.validate(d)


@pytest.mark.parametrize("name", ["probe-basic", "kicks-io-thread"])
def test_real_results_validate_once_versioned(validator, name):
    d = real(name)
    assert d["schema_version"] == 0          # written before the version existed
    d["schema_version"] = 1
    validator.validate(d)


def test_the_schema_rejects_a_predicted_bound_written_as_text(validator):
    d = doc(probe_result())
    d["cases"][0]["rows"][0]["predicted"] = "16"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(d)
    d = doc(probe_result())
    del d["schema_version"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(d)


def test_latency_carries_its_samples_and_the_schema_checks_them(validator):
    d = doc(probe_result(samples={"hlt": [900.0, 1100.0, 5000.0]}))
    lat = next(o for o in d["measurement"]["ops"] if o["op"] == "hlt")["latency"]["lat"]
    assert lat["samples"] == [900, 1100, 5000] and {"p50", "p99", "max", "histogram"} <= set(lat)
    validator.validate(d)
    lat["samples"] = ["900"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(d)


def test_log_paths_that_do_not_exist_are_left_out(tmp_path):
    (tmp_path / "l1-console.log").write_text("boot")
    r = probe_result()
    r.logs = {"l1_console": str(tmp_path / "l1-console.log"), "l2_serial": str(tmp_path / "gone.log")}
    d = doc(r)
    assert d["logs"] == {"l1_console": str(tmp_path / "l1-console.log")}


def test_written_and_loaded_back(tmp_path):
    path = tmp_path / "result.json"
    json_report.write(path, probe_result(), elapsed_seconds=2.0)
    d = json_report.load(path)
    assert d["scenario"] == "probe-basic" and d["verdict"] == "PASS" and d["elapsed_seconds"] == 2.0
    assert [c["name"] for c in d["cases"]][:2] == ["cpuid", "pio-kernel"]


@pytest.mark.parametrize("content,message", [
    ("{", "not JSON"),
    ("[]", "not a hil result"),
    (json.dumps({"scenario": "x", "cases": [], "schema_version": 99}), "newer than this hil reads"),
])
def test_a_bad_result_file_is_named(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(json_report.ResultFileError) as e:
        json_report.load(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
