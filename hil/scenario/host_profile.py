"""Host profiles (qemu_configs/host_profiles/*.yaml): the cost model's cycles per mechanism,
read with every error at file:line:key, and written back by `hil calibrate` with the
calibration's quantiles and where the figures were measured."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from hil.model.cost import HostCosts
from hil.model.errors import ModelError
from hil.model.latency import QUANTILES, Calibrated
from hil.scenario.errors import ConfigError
from hil.scenario.loader import find_config
from hil.scenario.yamlsrc import Located, load_yaml

COSTS = tuple(f.name for f in fields(HostCosts))
TOP_KEYS = ("description", "cycles", "calibration")


def host_profile_path(ref: str, root: Path) -> Path:
    """A bare name is qemu_configs/host_profiles/NAME.yaml; anything else a path."""
    return find_config(ref, "host_profiles", root)


def _check_costs(src: Located, value: Any, key: str) -> None:
    if not isinstance(value, Mapping):
        raise src.error(key, "expected a mapping of cost -> cycles")
    for k, v in value.items():
        if k not in COSTS:
            raise src.error(f"{key}.{k}", f"unknown cost; valid: {', '.join(COSTS)}")
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise src.error(f"{key}.{k}", f"expected a non-negative integer (cycles), got {v!r}")


def load_host_profile(path: Path, display: str | None = None) -> tuple[Calibrated, dict[str, Any]]:
    """The profile's costs (at each quantile when it was calibrated) and its calibration
    provenance ({} for a profile of published figures)."""
    src = load_yaml(path, display)
    data = src.data
    if not isinstance(data, Mapping):
        raise src.error("", "expected a mapping at the top")
    for k in data:
        if k not in TOP_KEYS:
            raise src.error(str(k), f"unknown key; valid: {', '.join(TOP_KEYS)}")
    if "cycles" not in data:
        raise src.error("", "missing required key 'cycles'")
    _check_costs(src, data["cycles"], "cycles")
    cal = data.get("calibration")
    if cal is not None:
        if not isinstance(cal, Mapping):
            raise src.error("calibration", "expected a mapping")
        quantiles = cal.get("quantiles") or {}
        if not isinstance(quantiles, Mapping):
            raise src.error("calibration.quantiles", "expected a mapping of p10/p90 -> costs")
        for q, costs in quantiles.items():
            if q not in {f"p{n}" for n in QUANTILES if n != 50}:
                raise src.error(f"calibration.quantiles.{q}", "expected p10 or p90")
            _check_costs(src, costs, f"calibration.quantiles.{q}")
        tail = cal.get("tail_cycles", 0)
        if not isinstance(tail, int) or isinstance(tail, bool) or tail < 0:
            raise src.error("calibration.tail_cycles", f"expected a non-negative integer (cycles), got {tail!r}")
        for i, m in enumerate(cal.get("measured") or []):
            if m not in COSTS:
                raise src.error(f"calibration.measured[{i}]", f"unknown cost; valid: {', '.join(COSTS)}")
    try:
        costs = Calibrated.from_mapping(data, src.file)
    except ModelError as e:
        raise ConfigError(src.file, None, "", str(e)) from e
    provenance = {k: v for k, v in (cal or {}).items()
                  if k not in ("quantiles", "measured", "sources", "tail_cycles")}
    return costs, provenance


def dump_host_profile(cal: Calibrated, provenance: Mapping[str, Any], description: str) -> str:
    """The YAML a user keeps: default.yaml's format (cycles) plus `calibration:` (where and when
    it was measured, the costs at p10/p90, the tail, which costs were measured and from what)."""
    body = cal.to_mapping()
    doc = {"description": description, "cycles": body["cycles"],
           "calibration": {**dict(provenance), "measured": body["measured"], "sources": body["sources"],
                           "quantiles": body["quantiles"], "tail_cycles": body["tail_cycles"]}}
    head = ("# Cycle costs for hil's cost model, measured by `hil calibrate` on the lab named below.\n"
            "# cycles: the medians; calibration.quantiles: the same costs at the calibration's p10 and p90;\n"
            "# tail_cycles: its largest sample - median (the latency bands are built from them).\n"
            "# Use: hil run SCENARIO --host-profile FILE\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
