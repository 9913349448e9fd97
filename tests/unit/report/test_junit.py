"""JUnit: stable case names, per-case properties (predicted and measured per reason, the run's
identity) and times that dashboards can chart."""
import xml.etree.ElementTree as ET

from hil.report import junit
from tests.unit.report.results import doc, probe_result, real


def props(tc):
    return {p.get("name"): p.get("value") for p in tc.find("properties")}


def test_case_names_are_stable_and_carry_predicted_and_measured():
    a = ET.fromstring(junit.render(probe_result()))
    b = ET.fromstring(junit.render(probe_result("workload.ops.0.count=64")))
    assert [t.get("name") for t in a.iter("testcase")] == [t.get("name") for t in b.iter("testcase")]
    cpuid_a, cpuid_b = (next(t for t in x.iter("testcase") if t.get("name") == "cpuid") for x in (a, b))
    assert props(cpuid_a)["cpuid.predicted"] == "16" and props(cpuid_a)["cpuid.measured"] == "16"
    assert props(cpuid_b)["cpuid.predicted"] == "64" and props(cpuid_b)["count"] == "64"
    assert props(cpuid_a)["interrupt.predicted"] == "0..inf"


def test_cases_carry_the_runs_identity_and_a_time():
    suite = ET.fromstring(junit.render(doc(probe_result(), elapsed_seconds=12.5)))
    assert suite.get("time") == "12.500" and suite.get("timestamp") and suite.get("hostname")
    cases = {t.get("name"): t for t in suite.iter("testcase")}
    p = props(cases["hlt"])
    assert (p["profile"], p["kernel"], p["image_key"], p["accel"]) == \
        ("stock-svm", "6.1.0-56-amd64", "1cda2b7a7afc8209d77fe7de", "tcg")
    # 2 s of L2 workload shared by TSC cycles: hlt ran 8 of the 72 iterations' cycles
    assert abs(float(cases["hlt"].get("time")) - 2.0 * 8 / 72) < 1e-3
    assert float(cases["kvm-counters"].get("time")) == 0.0


def test_a_failing_case_is_a_failure_element_with_the_mismatch():
    suite = ET.fromstring(junit.render(probe_result(extra={"cpuid": {"cpuid": 1}})))
    cpuid = next(t for t in suite.iter("testcase") if t.get("name") == "cpuid")
    assert cpuid.find("failure").get("message") == "cpuid: predicted 16, measured 17"
    assert suite.get("failures") == "1"


def test_a_real_result_renders_with_its_kernel():
    suite = ET.fromstring(junit.render(real("kicks-io-thread")))
    kicks = next(t for t in suite.iter("testcase") if t.get("name") == "kicks")
    p = props(kicks)
    assert p["kernel"] and p["image_key"] and p["kicks accepted by vCPU 0's APIC.measured"] == "16"


def test_a_bare_metal_result_names_the_machines_kernel():
    """hil run --host has no L1 image: the kernel under test is the machine's own (found by
    running hil run --host inside L1: junit.xml was not written)."""
    import copy
    d = copy.deepcopy(doc(probe_result()))
    d["provenance"]["l1"]["image"] = {"machine": "this machine (hil run --host)", "kernel_release": "6.1.0-57-amd64"}
    p = props(next(ET.fromstring(junit.render(d)).iter("testcase")))
    assert p["kernel"] == "6.1.0-57-amd64" and "image_key" not in p
    d["provenance"]["l1"]["image"] = "this machine (hil run --host)"     # as written before
    assert "kernel" not in props(next(ET.fromstring(junit.render(d)).iter("testcase")))
