"""`hil calibrate`: run the calibrate scenario on the lab (cpuid, pio-user, hlt and dev-msi, each
iteration or interrupt timed by the probe), turn its timings into this lab's host profile with
the cost model, and write it where the user keeps it (--host-profile FILE on later runs)."""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from hil.model.cost import HostCosts
from hil.model.latency import QUANTILES, Calibrated
from hil.scenario.host_profile import dump_host_profile
from hil.scenario.prediction import OpTiming, run_calibration
from hil.verdict.judge import OTHER_CPU_MAX

SCENARIO = "calibrate"


class CalibrationError(Exception):
    pass


class SpeedChanged(CalibrationError):
    """The host's speed changed between the calibration's ops: measuring again may succeed."""


def timings_of(doc: Mapping[str, Any]) -> list[OpTiming]:
    """Each op's cycles per iteration (simple ops) or per interrupt (dev-msi), from result.json."""
    ops = (doc.get("measurement") or {}).get("ops") or []
    return [OpTiming(o["op"], tuple((o.get("samples") or {}).get("iter") or (o.get("samples") or {}).get("lat") or ()),
                     dict(o.get("reported") or {})) for o in ops]


def calibrated(doc: Mapping[str, Any]) -> tuple[Calibrated, dict[str, Any]]:
    """The host profile a PASSed calibrate run measured, and its provenance. A run whose exits
    the model did not predict cannot calibrate: the costs are read off the model's paths."""
    # its exits must be the model's (the costs are read off the model's paths); its own latency
    # judgement, against an earlier profile, is no reason not to measure a new one
    bad = [c for c in doc.get("cases") or [] if c["verdict"] != "PASS" and not c["name"].endswith(" latency")]
    if bad or not doc.get("cases"):
        why = "; ".join(f"{c['name']}: {c['detail']}" for c in bad) or doc.get("error")
        raise CalibrationError(f"the calibration run is {doc.get('verdict')}: its paths are not the model's ({why})")
    prov = doc.get("provenance") or {}
    load = prov.get("host_load") or {}
    # the lab itself keeps about nproc threads busy (L1's vCPUs under TCG); twice that is other work
    if max(load.get("before", 0), load.get("after", 0)) > 2 * (load.get("nproc") or 1):
        raise CalibrationError(f"the host's load was {load.get('before')}..{load.get('after')} on {load.get('nproc')} "
                               "CPUs during the calibration: its figures would be the other work's (calibrate on a "
                               "quiet host)")
    t = timings_of(doc)
    cal = run_calibration(t, doc["profile"], doc["arch"], HostCosts(), with_judged=True)
    if cal is None or "exit_entry" not in cal.measured:
        raise CalibrationError("the run timed no calibration op (cpuid at least)")
    # a cost is what its op takes beyond the path it adds to, timed by an earlier op: at 0 the
    # later op ran no slower than the earlier one's path, which only a host that sped up between
    # them measures (seen: cpuid's round trip at 102 us in a slow phase, pio-user's whole
    # iteration below it a few seconds later)
    nothing = [f"{c} (from {cal.sources.get(c, '?')})" for c in cal.measured if getattr(cal.costs, c) <= 0]
    if nothing:
        raise SpeedChanged(f"{', '.join(nothing)} measured 0 cycles at p50: the host's speed changed between the "
                           "calibration's ops (calibrate on a quiet host)")
    host = prov.get("host") or {}
    khz = next((int(x.reported["tsc_khz"]) for x in t if x.reported.get("tsc_khz")), 0)
    l1 = ((prov.get("l1") or {}).get("image") or {}).get("kernel_release")
    return cal, {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "accel": (prov.get("accel") or {}).get("accel"), "qemu": prov.get("l0_qemu"),
        "host_cpu": host.get("cpu"), "host_kernel": host.get("kernel"), "nproc": host.get("nproc"),
        "host_load": prov.get("host_load"), "l1_kernel": l1, "profile": doc["profile"], "arch": doc["arch"],
        "tsc_khz": khz, "samples": {x.op: len(x.samples) for x in t if x.samples}}


def profile_text(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(the YAML to write, a table for the terminal)."""
    cal, prov = calibrated(doc)
    text = dump_host_profile(cal, prov, f"Measured by hil calibrate on {prov['host_cpu']} ({prov['accel']}), "
                             f"{prov['date']}")
    khz = prov["tsc_khz"] or 1
    rows = [f"{'cost':<12} {'from':<22} " + " ".join(f"{f'p{q} us':>10}" for q in QUANTILES)]
    for c in cal.measured:
        rows.append(f"{c:<12} {cal.sources.get(c, ''):<22} "
                    + " ".join(f"{getattr(cal.at[q], c) * 1000 / khz:>10.1f}" for q in QUANTILES))
    rows.append(f"tail (largest sample - median of a calibration op): {cal.tail * 1000 / khz:.1f} us")
    other = (prov.get("host_load") or {}).get("other_cpu", 0)
    if other > OTHER_CPU_MAX:      # kept, and said: the tail (so the p99 ceilings) carries the other work's stalls
        rows.append(f"warning: other work took {other:.0%} of the host's CPU time during the calibration; "
                    "its tail and p90s are wider than this lab's own (calibrate again on a quiet host)")
    return text, "\n".join(rows)
