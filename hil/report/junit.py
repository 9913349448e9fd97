"""JUnit XML for CI dashboards: one testcase per case, named stably (the op name, probe-glue,
whole-run, kvm-counters, lab) so a case's history survives a change of count; each case
carries the run's identity (profile, kernel, image key, accelerator) and the predicted and
measured value of every reason as properties, which trend views can plot."""
from __future__ import annotations

import datetime
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from hil.verdict import RunResult

TAGS = {"FAIL": "failure", "ERROR": "error", "SKIP": "skipped"}


def _show(b: Mapping[str, Any]) -> str:
    low, high = b["low"], b["high"]
    return str(low) if high is not None and low == high else f"{low}..{'inf' if high is None else high}"


def identity(doc: Mapping[str, Any]) -> dict[str, str]:
    """What a run ran on, as flat strings: the properties every case repeats."""
    prov = doc.get("provenance") or {}
    image = ((prov.get("l1") or {}).get("image") or {})
    if not isinstance(image, Mapping):      # a bare-metal result of hil before 0.1 named the machine in words
        image = {}
    accel = prov.get("accel") or {}
    series = prov.get("kernel_series")
    out = {"scenario": doc.get("scenario", ""), "profile": doc.get("profile", ""), "arch": doc.get("arch", ""),
           "kernel": image.get("kernel_release") or image.get("kernel_package") or "",
           "kernel_version": image.get("kernel_version", ""), "image_key": image.get("image_key", ""),
           "accel": accel.get("accel", "") if isinstance(accel, dict) else str(accel),
           "kernel_series": json.dumps(series, sort_keys=True) if isinstance(series, (dict, list)) else str(series or "")}
    return {k: str(v) for k, v in out.items() if v not in ("", None)}


def case_seconds(doc: Mapping[str, Any]) -> dict[str, float]:
    """Each op's share of L2's workload time, split by the TSC cycles the probe counted in it;
    cases that are not ops get 0."""
    m = doc.get("measurement") or {}
    total = (m.get("timings") or {}).get("l2_workload")
    tscs = {o["op"]: o.get("tsc") or 0 for o in m.get("ops") or []}
    cycles = sum(tscs.values())
    if not total or not cycles:
        return {}
    return {op: total * t / cycles for op, t in tscs.items()}


def render(result: RunResult | Mapping[str, Any], elapsed: float | None = None) -> str:
    doc = result.to_dict() if isinstance(result, RunResult) else result
    elapsed = elapsed if elapsed is not None else doc.get("elapsed_seconds", 0.0)
    cases = doc["cases"]
    suite = ET.Element("testsuite", name=f"hil.{doc['scenario']}", tests=str(len(cases)),
                       failures=str(sum(c["verdict"] == "FAIL" for c in cases)),
                       errors=str(sum(c["verdict"] == "ERROR" for c in cases)),
                       skipped=str(sum(c["verdict"] == "SKIP" for c in cases)), time=f"{elapsed:.3f}",
                       timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       hostname=socket.gethostname())
    ident = identity(doc)
    props = ET.SubElement(suite, "properties")
    for key, value in ident.items():
        ET.SubElement(props, "property", name=key, value=value)
    seconds = case_seconds(doc)
    for case in cases:
        tc = ET.SubElement(suite, "testcase", classname=f"hil.{doc['scenario']}", name=case["name"],
                           time=f"{seconds.get(case['name'], 0.0):.3f}")
        cprops = ET.SubElement(tc, "properties")
        for key, value in ident.items():
            ET.SubElement(cprops, "property", name=key, value=value)
        if "count" in (case.get("extra") or {}):
            ET.SubElement(cprops, "property", name="count", value=str(case["extra"]["count"]))
        for r in case["rows"]:
            ET.SubElement(cprops, "property", name=f"{r['reason']}.predicted", value=_show(r["predicted"]))
            ET.SubElement(cprops, "property", name=f"{r['reason']}.measured", value=str(r["measured"]))
        tag = TAGS.get(case["verdict"])
        if tag:
            ET.SubElement(tc, tag, message=case.get("detail") or case["verdict"])
        out = ET.SubElement(tc, "system-out")
        out.text = "\n".join(f"{r['reason']}: predicted {_show(r['predicted'])} measured {r['measured']}"
                             for r in case["rows"])
    return ET.tostring(suite, encoding="unicode")
