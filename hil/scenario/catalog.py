"""What the shipped scenarios are, for people and front ends: each one's description, groups
and what it needs (`hil list`, pytest markers), and every config key with its type, default,
limits and description (`hil schema`)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.scenario.errors import ConfigError
from hil.scenario.loader import list_scenarios, load_scenario
from hil.scenario.schema import SCENARIO_FIELDS, TOPOLOGY_FIELDS, Field


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    groups: tuple[str, ...]
    topology: str
    needs: tuple[str, ...]        # what it takes beyond the default lab (a series build, a --set)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "groups": list(self.groups),
                "topology": self.topology, "needs": list(self.needs)}


def entry(name: str, root: Path) -> Entry:
    try:
        sc = load_scenario(name, root=root)
    except ConfigError as e:       # e.g. foreign-kernel wants --set workload.kernel=...
        from hil.scenario.yamlsrc import load_yaml
        raw = load_yaml(root / "qemu_configs" / "scenarios" / f"{name}.yaml").data
        raw = raw if isinstance(raw, dict) else {}
        groups = raw.get("groups") if isinstance(raw.get("groups"), list) else ["default"]
        return Entry(name, str(raw.get("description", "")), tuple(map(str, groups)),
                     str(raw.get("topology", "")) if isinstance(raw.get("topology"), str) else "(inline)",
                     (f"--set {e.key}=..." if e.key else str(e),))
    needs = []
    if sc.topology.l1.series:
        needs.append(f"kernel series {sc.topology.l1.series} (built on first use)")
    if not sc.topology.l1.kernel.startswith("debian:"):
        needs.append(f"L1 kernel {sc.topology.l1.kernel}")
    return Entry(sc.name, sc.description, sc.groups, sc.topology.name, tuple(needs))


def catalog(root: Path) -> list[Entry]:
    return [entry(name, root) for name in list_scenarios(root)]


def groups(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in catalog(root):
        for g in e.groups:
            out.setdefault(g, []).append(e.name)
    return out


def _keys(fields: Mapping[str, Field], prefix: str) -> Iterator[tuple[str, Field]]:
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, f
        if f.fields is not None:
            yield from _keys(f.fields, key)
        if f.items is not None and f.items.fields is not None:
            yield from _keys(f.items.fields, f"{key}[]")


def _default(f: Field) -> Any:
    if f.required:
        return None
    if f.kind == "map" and f.fields is not None:
        return None
    return f.default() if callable(f.default) else f.default


def keys() -> list[dict[str, Any]]:
    """Every scenario key, then every topology key (as written in a topology file, or under
    `topology.` in a scenario), each with kind, default, limits and description."""
    out = []
    for scope, fields in (("scenario", SCENARIO_FIELDS), ("topology", TOPOLOGY_FIELDS)):
        for key, f in _keys(fields, ""):
            if scope == "scenario" and key.startswith("topology."):
                continue          # listed once, under the topology scope
            limits = []
            if f.choices:
                limits.append("one of " + ", ".join(map(str, f.choices)))
            if f.min is not None or f.max is not None:
                limits.append(f"[{'-inf' if f.min is None else f.min}, {'inf' if f.max is None else f.max}]")
            item = f.items
            if item is not None and item.fields is None:
                limits.append(f"items: {item.kind}" + (f" in [{item.min}, {item.max}]" if item.min is not None else ""))
            out.append({"scope": scope, "key": key, "type": f.kind, "required": f.required,
                        "default": _default(f), "nullable": f.nullable, "limits": "; ".join(limits),
                        "description": f.doc})
    return out
