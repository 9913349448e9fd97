"""Loading scenarios and topologies: YAML with lines -> overrides -> schema -> typed objects."""
from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.scenario.errors import ConfigError, printable
from hil.scenario.schema import (BOUND_FIELDS, DEVICE_FIELDS, SCENARIO_FIELDS, TOPOLOGY_FIELDS, Field, suggest,
                                 validate_map)
from hil.scenario.config import (OP_DEVICE_KINDS, Device, Expect, L1Config, L2Config, ProbeOp, Scenario, Topology,
                                 VfioPciDevice, VirtioNetDevice, Workload)
from hil.scenario.probe_ops import PROBE_OPS
from hil.scenario.yamlsrc import Located, load_yaml, parse_value

CONFIGS = "qemu_configs"


def find_config(name_or_path: str | Path, kind: str, root: Path) -> Path:
    """A bare name means root/qemu_configs/<kind>/<name>.yaml; anything else is a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        return p if p.is_absolute() else (Path.cwd() / p if _is_file(Path.cwd() / p) else root / p)
    return root / CONFIGS / kind / f"{name_or_path}.yaml"


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:             # a name too long for the file system, a path through a file, ...
        return False


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
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--set", None, text, "empty key")
    return key.split("."), parse_value(raw, text)


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
    for dev in (l2.get("devices") or []) if isinstance(l2, dict) and isinstance(l2.get("devices"), list) else []:
        if isinstance(dev, dict) and isinstance(dev.get("vhost"), bool):
            dev["vhost"] = "on" if dev["vhost"] else "off"


def _devices(items: list[Any], key: str, src: Located) -> tuple[Device, ...]:
    """l2.devices: each item validated against its kind's own schema."""
    out: list[Device] = []
    for i, item in enumerate(items):
        k = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise src.error(k, f"expected a mapping with a kind ({', '.join(DEVICE_FIELDS)}), got {item!r}")
        kind = item.get("kind")
        if kind not in DEVICE_FIELDS:
            raise src.error(f"{k}.kind" if "kind" in item else k,
                            f"unknown device kind {kind!r}" + suggest(str(kind), DEVICE_FIELDS))
        v = validate_map(item, DEVICE_FIELDS[kind], k, src)
        if kind == "vfio-pci":
            out.append(VfioPciDevice(model=v["model"]))
        else:
            out.append(VirtioNetDevice(backend=v["backend"], vhost=v["vhost"] == "on", bridge=v["bridge"]))
        if any(d.kind == out[-1].kind for d in out[:-1]):
            raise src.error(k, f"a second {kind} device: L2 gets at most one of each kind")
    return tuple(out)


def pci_machine(machine: str) -> bool:
    """Whether an L2 machine has PCI: q35 (or pc), or microvm with pcie=on."""
    name, _, opts = machine.partition(",")
    return name in ("q35", "pc") or name.startswith("pc-") or (name == "microvm" and "pcie=on" in opts.split(","))


MULTIBOOT_MAGICS = (b"\x02\xb0\xad\x1b", b"\xd6\x50\x52\xe8")   # multiboot 1 and 2, little-endian


def _kernel_kind(head: bytes) -> str | None:
    """What boots: an ELF (PVH or multiboot), a Linux bzImage (boot protocol) or a multiboot image."""
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head[0x202:0x206] == b"HdrS":
        return "linux"
    if any(head.find(m, 0, 8192) >= 0 and head.find(m, 0, 8192) % 4 == 0 for m in MULTIBOOT_MAGICS):
        return "multiboot"
    return None


def _check_path(value: str | None, key: str, src: Located, root: Path, kernel: bool = False) -> None:
    """A path in a config: a readable regular file, and a bootable kernel where one is meant."""
    if not value or value.startswith("debian:"):
        return
    p = Path(value) if Path(value).is_absolute() else root / value
    value = printable(value)
    if not _is_file(p):
        raise src.error(key, f"file not found: {value}" if not _exists(p) else f"not a regular file: {value}")
    try:
        with open(p, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        raise src.error(key, f"cannot read {value}: {e.strerror}") from e
    if kernel and _kernel_kind(head) is None:
        raise src.error(key, f"{value} is not a bootable kernel (no ELF, Linux boot protocol or multiboot header)")


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:
        return False


SERIES_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class Merged(Located):
    """A topology and the chain it extends, merged: keys a parent file set keep its file and line."""
    foreign: dict[str, tuple[str, int]] = field(default_factory=dict)   # key -> (file, line)
    chain: tuple[str, ...] = ()

    def _foreign(self, key: str) -> tuple[str, int] | None:
        while key:
            if key in self.foreign:
                return self.foreign[key]
            if key in self.lines:
                return None
            key = key.rsplit(".", 1)[0] if "." in key else (key.rsplit("[", 1)[0] if "[" in key else "")
        return None

    def error(self, key: str, message: str) -> ConfigError:
        hit = self._foreign(key)
        if hit is not None and not any(key == k or key.startswith((k + ".", k + "[")) for k in self.overridden):
            return ConfigError(hit[0], hit[1], key, message)
        return super().error(key, message)


def _paths(value: Any, path: str) -> Iterator[tuple[str, bool]]:
    """Every key path under value, in yamlsrc's spelling, and whether its value is a mapping."""
    yield path, isinstance(value, dict)
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, f"{path}[{i}]")


def _merge(child: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """Child keys over parent keys; mappings merge key by key, lists and scalars replace."""
    out = copy.deepcopy(parent)
    for k, v in child.items():
        out[k] = _merge(v, out[k]) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


MAX_EXTENDS = 8


def _extend(src: Located, data: dict[str, Any], prefix: str, root: Path, seen: tuple[str, ...]) -> Merged:
    """Resolve `extends:` of the topology mapping `data` (keys under `prefix` in src)."""
    parent_ref = data.get("extends")
    merged = Merged(data, src.file, dict(src.lines), dict(src.overridden))
    if parent_ref is None:
        return merged
    key = f"{prefix}extends"
    if not isinstance(parent_ref, str) or not parent_ref:
        raise src.error(key, f"expected a topology name or path, got {printable(repr(parent_ref))}")
    path = find_config(parent_ref, "topologies", root)
    if not _is_file(path):
        raise src.error(key, f"no such topology: {printable(_display(path, root))}")
    ident = str(path.resolve())
    if ident in seen:
        raise src.error(key, "extends itself: " + printable(" -> ".join(_display(Path(p), root) for p in seen + (ident,)), 400))
    if len(seen) >= MAX_EXTENDS:
        raise src.error(key, f"more than {MAX_EXTENDS} topologies extend one another")
    psrc = load_yaml(path, _display(path, root))
    if not isinstance(psrc.data, dict):
        raise psrc.error("", "expected a mapping at the top")
    parent = _extend(psrc, psrc.data, "", root, seen + (ident,))
    child_paths = dict(_paths(data, ""))
    replaced = {p for p, is_map in child_paths.items() if p and not is_map}
    foreign = {**{f"{prefix}{k}": v for k, v in parent.foreign.items()},
               **{f"{prefix}{k}": (parent.file, line) for k, line in parent.lines.items() if k}}
    for k in list(foreign):
        rel = k[len(prefix):]
        parts = [rel[:i] for i, c in enumerate(rel) if c in ".["] + [rel]
        if rel in child_paths or any(a in replaced for a in parts):
            del foreign[k]
    body = _merge({k: v for k, v in data.items() if k != "extends"},
                  {k: v for k, v in parent.data.items() if k != "extends"})
    merged.data = body
    merged.foreign = foreign
    merged.chain = (_display(path, root),) + parent.chain
    return merged


def _topology(src: Located, name: str, source: Path | None, root: Path, prefix: str = "") -> Topology:
    data = src.data if isinstance(src.data, dict) else None
    if data is None:
        raise src.error(prefix.rstrip("."), "expected a mapping")
    _normalise_onoff(data)
    v = validate_map(data, TOPOLOGY_FIELDS, prefix.rstrip("."), src)
    l1, l2 = v["l1"], v["l2"]
    _check_path(l1["kernel"], f"{prefix}l1.kernel", src, root, kernel=True)
    if l1["series"] and not SERIES_NAME.fullmatch(l1["series"]):
        raise src.error(f"{prefix}l1.series", f"{printable(repr(l1['series']))} is not a series name (kernel_patches/<name>)")
    if l1["series"] and not _is_file(root / "kernel_patches" / l1["series"] / "series.yaml"):
        raise src.error(f"{prefix}l1.series", f"no series kernel_patches/{l1['series']}/series.yaml")
    if l2["dedicated"] != "off" and not l1["series"]:
        raise src.error(f"{prefix}l2.dedicated", "dedicated mode needs a kernel series that has it "
                        "(l1.series, e.g. dedicated-cpu)")
    if l2["pin"] and len(l2["pin"]) != l2["smp"]:
        raise src.error(f"{prefix}l2.pin", f"one L1 CPU per vCPU: {len(l2['pin'])} given, l2.smp is {l2['smp']}")
    for cpu in l2["pin"]:
        if cpu >= l1["smp"]:
            raise src.error(f"{prefix}l2.pin", f"L1 CPU {cpu} does not exist (l1.smp is {l1['smp']})")
    if l2["memory"] >= l1["memory"]:
        raise src.error(f"{prefix}l2.memory", f"{l2['memory']} MiB does not fit in L1's {l1['memory']} MiB")
    devices = _devices(l2["devices"], f"{prefix}l2.devices", src)
    if devices and not pci_machine(l2["machine"]):
        raise src.error(f"{prefix}l2.machine", f"L2's devices need PCI: machine q35, or microvm,pcie=on "
                        f"(got {l2['machine']!r})")
    l2["devices"] = devices
    return Topology(
        name=name, source=source, description=v["description"], accel=v["accel"], timeout=v["timeout"],
        l1=L1Config(**{**l1, "qemu_params": tuple(l1["qemu_params"])}),
        l2=L2Config(**{**l2, "qemu_params": tuple(l2["qemu_params"]), "pin": tuple(l2["pin"])}),
        extends=src.chain if isinstance(src, Merged) else (),
    )


def _origins(src: Located, prefix: str = "") -> dict[str, str]:
    """key -> FILE:LINE or --set TEXT, for every key of src (renamed under prefix)."""
    out = {f"{prefix}{k}": f"{src.file}:{line}" for k, line in src.lines.items() if k}
    if isinstance(src, Merged):
        out.update({f"{prefix}{k}" if not k.startswith(prefix) else k: f"{f}:{line}"
                    for k, (f, line) in src.foreign.items()})
    out.update({f"{prefix}{k}": f"--set {text}" for k, text in src.overridden.items()})
    return out


def load_topology(path_or_name: str | Path, *, root: Path, overrides: Sequence[str] = ()) -> Topology:
    path = find_config(path_or_name, "topologies", root)
    if not _is_file(path):
        raise ConfigError(str(path_or_name), None, "", f"no such topology file {printable(_display(path, root))}")
    src = load_yaml(path, _display(path, root))
    if not isinstance(src.data, dict):
        raise src.error("", "expected a mapping at the top")
    merged = _extend(src, src.data, "", root, (str(path.resolve()),))
    for text in overrides:
        parts, value = _parse_override(text)
        apply_override(merged, TOPOLOGY_FIELDS, parts, value, text)
    return _topology(merged, path.stem, path, root)


# -- scenario ----------------------------------------------------------------------------
def _reason_names(arch: str) -> set[str]:
    from hil.model import exit_reasons
    arches = ("svm", "vmx", "vmx-2012") if arch == "auto" else ((arch, "vmx-2012") if arch == "vmx" else (arch,))
    return {name for a in arches for name in exit_reasons(a).values()}


def _expect(v: dict[str, Any], src: Located, arch: str) -> Expect:
    valid = _reason_names(arch)
    where = "any architecture" if arch == "auto" else arch
    reasons = v["reasons"]
    if reasons != "all":
        if not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
            raise src.error("expect.reasons", f"expected 'all' or a list of reason names, got {reasons!r}")
        if not reasons:
            raise src.error("expect.reasons", "an empty list judges nothing: name reasons, or 'all'")
        for i, r in enumerate(reasons):
            if r not in valid:
                raise src.error(f"expect.reasons[{i}]", f"{r!r} is no exit reason of {where}{suggest(r, sorted(valid))}")
    exits: dict[str, tuple[int, int | None]] = {}
    if not isinstance(v["exits"], dict):
        raise src.error("expect.exits", "expected a mapping of reason -> count or {min, max}")
    for reason, b in v["exits"].items():
        key = f"expect.exits.{reason}"
        if str(reason) not in valid:
            raise src.error(key, f"{reason!r} is no exit reason of {where}{suggest(str(reason), sorted(valid))}")
        if isinstance(b, int) and not isinstance(b, bool) and b >= 0:
            exits[str(reason)] = (b, b)
        elif isinstance(b, dict):
            bv = validate_map(b, BOUND_FIELDS, key, src)
            if bv["max"] is not None and bv["min"] > bv["max"]:
                raise src.error(key, f"min {bv['min']} > max {bv['max']}: no count can pass")
            exits[str(reason)] = (bv["min"], bv["max"])
        else:
            raise src.error(key, f"expected a count or {{min, max}}, got {b!r}")
    return Expect("all" if reasons == "all" else tuple(reasons), exits)


def _probe_rules(wl: dict[str, Any], src: Located, topology: Topology) -> None:
    """The op table's limits: count per op, vCPUs it needs, each op once."""
    if not wl["ops"]:
        raise src.error("workload.ops", "a probe workload needs at least one op")
    for key in ("kernel", "initrd"):
        if wl[key]:
            raise src.error(f"workload.{key}", "only for workload kind 'kernel'")
    names = [o["op"] for o in wl["ops"]]
    for i, o in enumerate(wl["ops"]):
        spec = PROBE_OPS[o["op"]]
        if o["count"] > spec.max_count:
            raise src.error(f"workload.ops[{i}].count", f"{o['count']} is more than op {spec.name} allows "
                            f"in one run ({spec.max_count})")
        if topology.l2.smp < spec.min_vcpus:
            raise src.error(f"workload.ops[{i}].op", f"{spec.name} needs {spec.min_vcpus} L2 vCPUs "
                            f"(topology l2.smp is {topology.l2.smp})")
        if spec.device is not None and topology.l2.device(spec.device) is None:
            kind, model = OP_DEVICE_KINDS[spec.device]
            need = f"{{kind: {kind}" + (f", model: {model}}}" if model else "}")
            raise src.error(f"workload.ops[{i}].op", f"{spec.name} needs an {spec.device} device in L2: the "
                            f"topology {topology.name!r} has none in l2.devices (add {need}, or use a "
                            f"topology that has one, e.g. nested-svm-{spec.device})")
        if names.index(spec.name) != i:
            # exits are told apart by the code they come from: two runs of one op cannot be
            raise src.error(f"workload.ops[{i}].op", f"{spec.name} already runs as ops[{names.index(spec.name)}]: "
                            "each op at most once per workload")


def _topology_for(src: Located, overrides: list[tuple[list[str], Any, str]], root: Path
                  ) -> tuple[Located, str, Path | None, str]:
    """The scenario's topology source (named or inline, `extends:` resolved), its name, file and
    key prefix, with the `--set topology...` overrides applied."""
    path = src.source_path if isinstance(src, _ScenarioSource) else None
    for parts, value, text in overrides:
        if parts == ["topology"]:          # --set topology=NAME: another named topology
            if not isinstance(value, str) or not value:
                raise ConfigError("--set", None, text, "name a topology (set its keys with topology.KEY=VALUE)")
            src.data["topology"] = value
            src.overridden["topology"] = text
    ref = src.data.get("topology")
    if ref is None:
        raise src.error("", "missing required key 'topology'")
    if isinstance(ref, str):
        tpath = find_config(ref, "topologies", root)
        if not _is_file(tpath):
            raise src.error("topology", f"no such topology: {printable(_display(tpath, root))} "
                            f"(known: {', '.join(list_topologies(root)) or 'none'})")
        tsrc = load_yaml(tpath, _display(tpath, root))
        if not isinstance(tsrc.data, dict):
            raise tsrc.error("", "expected a mapping at the top")
        merged = _extend(tsrc, tsrc.data, "", root, (str(tpath.resolve()),))
        name, prefix = tpath.stem, ""
    elif isinstance(ref, dict):
        merged = _extend(src, ref, "topology.", root, (str(path.resolve()),) if path else ())
        merged.data = {"topology": merged.data}   # inline keys keep their "topology." prefix
        tpath, name, prefix = None, f"{path.stem if path else 'scenario'}-inline", "topology."
    else:
        raise src.error("topology", f"expected a topology name or mapping, got {printable(repr(ref))}")
    for parts, value, text in overrides:
        if parts[0] == "topology" and len(parts) > 1:
            if prefix:
                apply_override(merged, {"topology": Field("map", fields=TOPOLOGY_FIELDS)}, parts, value, text)
            else:
                apply_override(merged, TOPOLOGY_FIELDS, parts[1:], value, text)
    if prefix:
        merged.data = merged.data["topology"]
    return merged, name, tpath, prefix


@dataclass
class _ScenarioSource(Located):
    source_path: Path | None = None


def list_topologies(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / CONFIGS / "topologies").glob("*.yaml"))


def load_scenario(path_or_name: str | Path, *, root: Path, overrides: Sequence[str] = (),
                  valid_profiles: Iterable[str] | None = None) -> Scenario:
    path = find_config(path_or_name, "scenarios", root)
    if not _is_file(path):
        known = ", ".join(list_scenarios(root)) or "none"
        raise ConfigError(str(path_or_name) or "''", None, "", f"no such scenario file {printable(str(path))} (known: {known})")
    loaded = load_yaml(path, _display(path, root))
    src = _ScenarioSource(loaded.data, loaded.file, loaded.lines, loaded.overridden, source_path=path)
    if not isinstance(src.data, dict):
        raise src.error("", "expected a mapping at the top")
    parsed = [(*_parse_override(text), text) for text in overrides]
    topo_src, topo_name, topo_path, prefix = _topology_for(src, parsed, root)
    for parts, value, text in parsed:
        if parts[0] != "topology":
            apply_override(src, SCENARIO_FIELDS, parts, value, text)
    topology = _topology(topo_src, topo_name, topo_path, root, prefix)
    origins = {**_origins(src), **{k if prefix else f"topology.{k}": v for k, v in _origins(topo_src).items()}}
    data = dict(src.data, topology="resolved")   # validated above, with its own file's lines
    fields = dict(SCENARIO_FIELDS, topology=Field("str"))
    v = validate_map(data, fields, "", src)
    wl = v["workload"]
    kind = wl["kind"]
    if kind == "probe":
        _probe_rules(wl, src, topology)
    else:
        if wl["ops"]:
            raise src.error("workload.ops", "only for workload kind 'probe'")
        if not wl["kernel"]:
            raise src.error("workload", "missing required key 'kernel' for workload kind 'kernel'")
        _check_path(wl["kernel"], "workload.kernel", src, root, kernel=True)
        _check_path(wl["initrd"], "workload.initrd", src, root)
    if wl["done_pattern"] is not None:
        try:
            re.compile(wl["done_pattern"])
        except re.error as e:
            raise src.error("workload.done_pattern", f"not a regular expression: {e}") from e
    resolve = (lambda p: str(p if Path(p).is_absolute() else (root / p).resolve()) if p else None)
    profiles = list(valid_profiles) if valid_profiles is not None else None
    if profiles is not None and v["profile"] != "auto" and v["profile"] not in profiles:
        raise src.error("profile", f"unknown profile {v['profile']!r}{suggest(v['profile'], profiles)}")
    host_profile = None
    if v["host_profile"] is not None:
        from hil.scenario.host_profile import host_profile_path, load_host_profile
        hp = host_profile_path(v["host_profile"], root)
        if not _is_file(hp):
            raise src.error("host_profile", f"no such host profile {printable(str(hp))} (hil calibrate writes one)")
        load_host_profile(hp, _display(hp, root))       # its errors now, at its own file:line
        host_profile = str(hp.resolve())
    return Scenario(
        name=path.stem, source=path, description=v["description"], topology=topology, profile=v["profile"],
        arch=v["arch"], groups=tuple(v["groups"]),
        workload=Workload(kind, tuple(ProbeOp(o["op"], o["count"]) for o in wl["ops"]), wl["hlt_timer_us"],
                          resolve(wl["kernel"]), wl["append"], resolve(wl["initrd"]), wl["done_pattern"],
                          wl["kick_interval_ms"], wl["race_timeout_us"], wl["frame_interval_us"],
                          wl["dev_timeout_us"]),
        expect=_expect(v["expect"], src, v["arch"]), overrides=tuple(overrides), host_profile=host_profile,
        origins=origins,
    )
