"""Loading scenarios and topologies: YAML with lines -> overrides -> schema -> typed objects."""
from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hil.scenario.errors import ConfigError
from hil.scenario.schema import (BOUND_FIELDS, SCENARIO_FIELDS, TOPOLOGY_FIELDS, Field, suggest, validate_map)
from hil.scenario.config import (Expect, L1Config, L2Config, ProbeOp, Scenario, Topology, Workload)
from hil.scenario.yamlsrc import Located, load_yaml

CONFIGS = "qemu_configs"


def find_config(name_or_path: str | Path, kind: str, root: Path) -> Path:
    """A bare name means root/qemu_configs/<kind>/<name>.yaml; anything else is a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        return p if p.is_absolute() else (Path.cwd() / p if (Path.cwd() / p).exists() else root / p)
    return root / CONFIGS / kind / f"{name_or_path}.yaml"


def list_scenarios(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / CONFIGS / "scenarios").glob("*.yaml"))


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


# -- overrides ---------------------------------------------------------------------------
def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError("--set", None, text, "expected KEY=VALUE")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError("--set", None, text, "empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as e:
        raise ConfigError("--set", None, text, f"cannot parse value {raw!r}: {e}") from e
    return key.split("."), value


def apply_override(src: Located, fields: dict[str, Field], parts: list[str], value: Any, text: str) -> None:
    """Set one dotted key, checking each step against the schema (so typos are caught even
    for keys the file leaves out). Later errors at that key name the override, not the file."""
    node: Any = src.data
    path = ""
    spec: Field | None = Field("map", fields=fields)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError("--set", None, text, f"no list item {part!r} (the list has {len(node)})")
            idx = int(part)
            spec = spec.items if spec else None
            path += f"[{idx}]"
            if last:
                src.overridden[path] = text
                node[idx] = value
                return
            node = node[idx]
            continue
        if not isinstance(node, dict):
            raise ConfigError("--set", None, text, f"{'.'.join(parts[:i])} is not a mapping")
        sub = spec.fields if spec and spec.fields else None
        if sub is not None and part not in sub:
            raise ConfigError("--set", None, text, f"unknown key {part!r}{suggest(part, sub)}")
        spec = sub[part] if sub is not None else None
        path = f"{path}.{part}" if path else part
        if last:
            src.overridden[path] = text
            node[part] = value
            return
        if node.get(part) is None:
            node[part] = [] if spec and spec.kind == "list" else {}
        node = node[part]


# -- topology ----------------------------------------------------------------------------
def _normalise_onoff(data: dict[str, Any]) -> None:
    # YAML 1.1 reads a bare `on`/`off` as true/false (dedicated: only `off` has a meaning).
    l2 = data.get("l2")
    if isinstance(l2, dict) and isinstance(l2.get("kernel_irqchip"), bool):
        l2["kernel_irqchip"] = "on" if l2["kernel_irqchip"] else "off"
    if isinstance(l2, dict) and l2.get("dedicated") is False:
        l2["dedicated"] = "off"


def _check_path(value: str | None, key: str, src: Located, root: Path) -> None:
    if value and not value.startswith("debian:"):
        p = Path(value)
        if not (p if p.is_absolute() else root / p).exists():
            raise src.error(key, f"file not found: {value}")


def _topology(src: Located, name: str, source: Path | None, root: Path, prefix: str = "") -> Topology:
    data = src.data if isinstance(src.data, dict) else None
    if data is None:
        raise src.error(prefix.rstrip("."), "expected a mapping")
    _normalise_onoff(data)
    v = validate_map(data, TOPOLOGY_FIELDS, prefix.rstrip("."), src)
    l1, l2 = v["l1"], v["l2"]
    _check_path(l1["kernel"], f"{prefix}l1.kernel", src, root)
    if l1["series"] and not (root / "kernel_patches" / l1["series"]).is_dir():
        raise src.error(f"{prefix}l1.series", f"no series kernel_patches/{l1['series']}/")
    if l2["dedicated"] != "off" and not l1["series"]:
        raise src.error(f"{prefix}l2.dedicated", "dedicated mode needs a kernel series that has it "
                        "(l1.series, e.g. dedicated-cpu)")
    if l2["pin"] and len(l2["pin"]) != l2["smp"]:
        raise src.error(f"{prefix}l2.pin", f"one L1 CPU per vCPU: {len(l2['pin'])} given, l2.smp is {l2['smp']}")
    for cpu in l2["pin"]:
        if cpu >= l1["smp"]:
            raise src.error(f"{prefix}l2.pin", f"L1 CPU {cpu} does not exist (l1.smp is {l1['smp']})")
    return Topology(
        name=name, source=source, description=v["description"], accel=v["accel"], timeout=v["timeout"],
        l1=L1Config(**{**l1, "qemu_params": tuple(l1["qemu_params"])}),
        l2=L2Config(**{**l2, "qemu_params": tuple(l2["qemu_params"]), "pin": tuple(l2["pin"])}),
    )


def load_topology(path_or_name: str | Path, *, root: Path, overrides: Sequence[str] = ()) -> Topology:
    path = find_config(path_or_name, "topologies", root)
    src = load_yaml(path, _display(path, root))
    for text in overrides:
        parts, value = _parse_override(text)
        apply_override(src, TOPOLOGY_FIELDS, parts, value, text)
    return _topology(src, path.stem, path, root)


# -- scenario ----------------------------------------------------------------------------
def _expect(v: dict[str, Any], src: Located) -> Expect:
    reasons = v["reasons"]
    if reasons != "all" and not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        raise src.error("expect.reasons", f"expected 'all' or a list of reason names, got {reasons!r}")
    exits: dict[str, tuple[int, int | None]] = {}
    if not isinstance(v["exits"], dict):
        raise src.error("expect.exits", "expected a mapping of reason -> count or {min, max}")
    for reason, b in v["exits"].items():
        key = f"expect.exits.{reason}"
        if isinstance(b, int) and not isinstance(b, bool) and b >= 0:
            exits[str(reason)] = (b, b)
        elif isinstance(b, dict):
            bv = validate_map(b, BOUND_FIELDS, key, src)
            exits[str(reason)] = (bv["min"], bv["max"])
        else:
            raise src.error(key, f"expected a count or {{min, max}}, got {b!r}")
    return Expect("all" if reasons == "all" else tuple(reasons), exits)


def load_scenario(path_or_name: str | Path, *, root: Path, overrides: Sequence[str] = (),
                  valid_profiles: Iterable[str] | None = None) -> Scenario:
    path = find_config(path_or_name, "scenarios", root)
    if not path.exists():
        known = ", ".join(list_scenarios(root)) or "none"
        raise ConfigError(str(path_or_name), None, "", f"no such scenario file {path} (known: {known})")
    src = load_yaml(path, _display(path, root))
    if not isinstance(src.data, dict):
        raise src.error("", "expected a mapping at the top")
    # A named topology is loaded now so overrides can reach into it ("topology.l1.memory=...").
    topo_src, topo_name, topo_path = src, f"{path.stem}-inline", None
    topo_prefix = "topology."
    if isinstance(src.data.get("topology"), str):
        topo_path = find_config(src.data["topology"], "topologies", root)
        if not topo_path.exists():
            raise src.error("topology", f"file not found: {_display(topo_path, root)}")
        topo_src = load_yaml(topo_path, _display(topo_path, root))
        topo_name, topo_prefix = topo_path.stem, ""
        src.data["topology"] = copy.deepcopy(topo_src.data)
    elif "topology" not in src.data:
        raise src.error("", "missing required key 'topology'")
    for text in overrides:
        parts, value = _parse_override(text)
        if parts[0] == "topology" and topo_path is not None:
            apply_override(topo_src, TOPOLOGY_FIELDS, parts[1:], value, text)
        else:
            apply_override(src, SCENARIO_FIELDS, parts, value, text)
    if topo_path is None:
        topo_src = Located(src.data["topology"], src.file, src.lines, src.overridden)
    topology = _topology(topo_src, topo_name, topo_path, root, topo_prefix)
    src.data["topology"] = "resolved"   # validated above, with its own file's lines
    fields = dict(SCENARIO_FIELDS, topology=Field("str"))
    v = validate_map(src.data, fields, "", src)
    wl = v["workload"]
    kind = wl["kind"]
    if kind == "probe":
        if not wl["ops"]:
            raise src.error("workload.ops", "a probe workload needs at least one op")
        for key in ("kernel", "initrd"):
            if wl[key]:
                raise src.error(f"workload.{key}", "only for workload kind 'kernel'")
        ops = [o["op"] for o in wl["ops"]]
        if "ipi-race" in ops and topology.l2.smp < 2:
            raise src.error("workload.ops", "ipi-race needs a second vCPU to send the IPIs (topology l2.smp >= 2)")
        if "kicks" in ops and ops.count("kicks") > 1:
            raise src.error("workload.ops", "at most one kicks op: hil sends its MSIs once the probe begins it")
    else:
        if wl["ops"]:
            raise src.error("workload.ops", "only for workload kind 'probe'")
        if not wl["kernel"]:
            raise src.error("workload", "missing required key 'kernel' for workload kind 'kernel'")
        _check_path(wl["kernel"], "workload.kernel", src, root)
        _check_path(wl["initrd"], "workload.initrd", src, root)
    resolve = (lambda p: str(p if Path(p).is_absolute() else (root / p).resolve()) if p else None)
    profiles = list(valid_profiles) if valid_profiles is not None else None
    if profiles is not None and v["profile"] != "auto" and v["profile"] not in profiles:
        raise src.error("profile", f"unknown profile {v['profile']!r}{suggest(v['profile'], profiles)}")
    return Scenario(
        name=path.stem, source=path, description=v["description"], topology=topology, profile=v["profile"],
        arch=v["arch"], groups=tuple(v["groups"]),
        workload=Workload(kind, tuple(ProbeOp(o["op"], o["count"]) for o in wl["ops"]), wl["hlt_timer_us"],
                          resolve(wl["kernel"]), wl["append"], resolve(wl["initrd"]), wl["done_pattern"],
                          wl["kick_interval_ms"], wl["race_timeout_us"]),
        expect=_expect(v["expect"], src), overrides=tuple(overrides),
    )
