"""JUnit XML for CI dashboards: one testcase per case, provenance as properties."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from hil.verdict import RunResult, Verdict
from hil.verdict.judge import show


def render(result: RunResult) -> str:
    suite = ET.Element("testsuite", name=f"hil.{result.scenario}", tests=str(len(result.cases)),
                       failures=str(sum(c.verdict is Verdict.FAIL for c in result.cases)),
                       errors=str(sum(c.verdict is Verdict.ERROR for c in result.cases)),
                       skipped=str(sum(c.verdict is Verdict.SKIP for c in result.cases)))
    props = ET.SubElement(suite, "properties")
    for key in ("accel", "l0_qemu", "host", "kernel_series"):
        if key in result.provenance:
            ET.SubElement(props, "property", name=key, value=json.dumps(result.provenance[key]))
    for case in result.cases:
        tc = ET.SubElement(suite, "testcase", classname=f"hil.{result.scenario}", name=case.name)
        tag = {Verdict.FAIL: "failure", Verdict.ERROR: "error", Verdict.SKIP: "skipped"}.get(case.verdict)
        if tag:
            ET.SubElement(tc, tag, message=case.detail or case.verdict.value)
        out = ET.SubElement(tc, "system-out")
        out.text = "\n".join(f"{r.reason}: predicted {show(r.predicted)} measured {r.measured}" for r in case.rows)
    return ET.tostring(suite, encoding="unicode")
