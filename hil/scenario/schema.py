"""The config schema as data: one Field per key, checked by one small validator."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping

from hil.scenario.probe_ops import MAX_COUNT, PROBE_OPS
from hil.scenario.yamlsrc import Located


@dataclass(frozen=True)
class Field:
    kind: str                              # str | int | bool | enum | list | map | str-or-map | any
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    min: int | None = None
    max: int | None = None
    nullable: bool = False
    fields: Mapping[str, "Field"] | None = None   # for map (and the map form of str-or-map)
    items: "Field | None" = None                   # for list
    doc: str = ""


def suggest(key: str, valid: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(valid))})"


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def validate(value: Any, f: Field, key: str, src: Located) -> Any:
    """Return the value with defaults filled in; raise src.error(key, ...) on a mistake."""
    if value is None:
        if f.nullable or (not f.required and f.default is None):
            return None
        raise src.error(key, "must not be null")
    kind = f.kind
    if kind == "str-or-map":
        kind = "str" if isinstance(value, str) else "map"
    if kind == "any":
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise src.error(key, f"expected a string, got {_type_name(value)} {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise src.error(key, f"expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise src.error(key, f"expected an integer, got {_type_name(value)} {value!r}")
        if f.min is not None and value < f.min or f.max is not None and value > f.max:
            lo = "-inf" if f.min is None else f.min
            hi = "inf" if f.max is None else f.max
            raise src.error(key, f"{value} is out of range [{lo}, {hi}]")
        return value
    if kind == "enum":
        if value not in f.choices:
            raise src.error(key, f"{value!r} is not one of {', '.join(map(str, f.choices))}")
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise src.error(key, f"expected a list, got {_type_name(value)} {value!r}")
        assert f.items is not None
        for i, v in enumerate(value):
            if v is None and not f.items.nullable:
                raise src.error(f"{key}[{i}]", "empty list item")
        return [validate(v, f.items, f"{key}[{i}]", src) for i, v in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise src.error(key, f"expected a mapping, got {_type_name(value)} {value!r}")
        assert f.fields is not None
        return validate_map(value, f.fields, key, src)
    raise AssertionError(f"schema kind {kind}")


def validate_map(value: dict[str, Any], fields: Mapping[str, Field], key: str, src: Located) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in value:
        if k not in fields:
            raise src.error(f"{key}.{k}" if key else k, f"unknown key {k!r}{suggest(k, fields)}")
    for k, f in fields.items():
        sub = f"{key}.{k}" if key else k
        if k not in value:
            if f.required:
                raise src.error(key, f"missing required key {k!r}")
            if f.kind == "map" and f.fields is not None:
                out[k] = validate_map({}, f.fields, sub, src)   # fills the nested defaults
            else:
                out[k] = f.default() if callable(f.default) else f.default
            continue
        out[k] = validate(value[k], f, sub, src)
    return out


STR_LIST = Field("list", default=list, items=Field("str"))

L1_FIELDS: dict[str, Field] = {
    "kernel": Field("str", default="debian:linux-image-6.1",
                    doc="'debian:linux-image-X.Y' (a kernel line: its newest ABI package at run time), "
                        "'debian:<ABI package>' or 'debian:<ABI package>=<version>' (pinned)"),
    "series": Field("str", nullable=True, doc="kernel_patches/<series> whose modules replace the stock ones"),
    "machine": Field("str", default="q35", doc="L1 QEMU -machine type"),
    "cpu": Field("str", default="auto", doc="auto: host under kvm, max under tcg (SVM emulated)"),
    "smp": Field("int", default=2, min=1, max=64, doc="L1 vCPUs"),
    "memory": Field("int", default=1024, min=256, max=16_384, doc="MiB (this machine has 24 GiB; TCG L1s are small)"),
    "append": Field("str", default="", doc="extra L1 kernel command line"),
    "qemu_params": Field("list", default=list, items=Field("str"), doc="extra L1 QEMU arguments, one per item"),
    "boot_timeout": Field("int", default=180, min=1, max=86_400, doc="seconds until the L1 agent must answer"),
    "snapshot": Field("bool", default=True, doc="restore a saved idle L1 instead of booting (QEMU >= 8.2)"),
    "park_l2": Field("bool", default=True,
                     doc="a single scenario's run (hil run NAME, not a batch) restores L1 saved with its L2 QEMU "
                         "already started and paused, instead of starting it (needs snapshot; not with L2 devices)"),
}
L2_FIELDS: dict[str, Field] = {
    "machine": Field("str", default="microvm", doc="L2 QEMU -machine type (run by QEMU inside L1)"),
    "cpu": Field("str", default="host", doc="L2 QEMU -cpu model"),
    "smp": Field("int", default=1, min=1, max=16, doc="L2 vCPUs"),
    "memory": Field("int", default=64, min=16, max=16_000, doc="MiB, within L1's memory"),
    # YAML 1.1 reads a bare on/off as a boolean: true/false are accepted as on/off.
    "kernel_irqchip": Field("enum", default="on", choices=("on", "split", "off"),
                             doc="L2 -accel kvm,kernel-irqchip=: where the interrupt controllers are emulated"),
    "cpu_pm": Field("bool", default=False, doc="QEMU -overcommit cpu-pm=on (KVM_CAP_X86_DISABLE_EXITS)"),
    "dedicated": Field("enum", default="off", choices=("off", "v2", "v1", "direct"),
                       doc="KVM_SET_DEDICATED on every vCPU before it runs (needs the dedicated-cpu series; "
                           "direct: the dedicated-cpu-direct series)"),
    "pin": Field("list", default=list, items=Field("int", min=0, max=63),
                 doc="L1 CPU for each vCPU thread, in vCPU order (e.g. [1, 0]); empty: not pinned"),
    "qemu_params": Field("list", default=list, items=Field("str"), doc="extra L2 QEMU arguments, one per item"),
    "timeout": Field("int", default=180, min=1, max=86_400, doc="seconds for one L2 run"),
    # each item is checked against DEVICE_FIELDS[its kind] by the loader
    "devices": Field("list", default=list, items=Field("any"), doc="PCI devices L2 gets (a list of {kind: ...})"),
}
# one schema per device kind (hil/lab/devices/ has one module per kind)
DEVICE_FIELDS: dict[str, dict[str, Field]] = {
    "vfio-pci": {
        "kind": Field("str", required=True),
        "model": Field("enum", required=True, choices=("edu",),
                       doc="the emulated PCI device L0 gives L1 behind a vIOMMU, assigned to L2 through VFIO"),
    },
    "virtio-net": {
        "kind": Field("str", required=True),
        "backend": Field("enum", default="tap", choices=("tap",), doc="a tap L1's agent creates with pyroute2"),
        "vhost": Field("enum", default="off", choices=("on", "off"), doc="vhost-net in L1's kernel, or QEMU's own"),
        "bridge": Field("bool", default=False, doc="put the tap into a bridge of its own"),
    },
}
TOPOLOGY_FIELDS: dict[str, Field] = {
    "extends": Field("str", nullable=True, doc="a topology (name or path) whose keys this one starts from"),
    "description": Field("str", default="", doc="one line for people"),
    "accel": Field("enum", default="auto", choices=("auto", "kvm", "tcg"),
                   doc="L0 accelerator for L1: auto probes KVM (nested SVM/VMX) and falls back to TCG"),
    "timeout": Field("int", default=600, min=1, max=86_400,
                     doc="seconds for L1's boot and, separately, for one scenario's run on it (builds not counted)"),
    "l1": Field("map", default=dict, fields=L1_FIELDS, doc="the L1 guest (runs kvm inside)"),
    "l2": Field("map", default=dict, fields=L2_FIELDS, doc="the L2 guest QEMU that L1 runs"),
}
OP_FIELDS: dict[str, Field] = {
    "op": Field("enum", required=True, choices=tuple(PROBE_OPS), doc="a probe op (hil/scenario/probe_ops.py)"),
    "count": Field("int", required=True, min=1, max=MAX_COUNT, doc="iterations (some ops allow fewer)"),
}
WORKLOAD_FIELDS: dict[str, Field] = {
    "kind": Field("enum", default="probe", choices=("probe", "kernel"),
                  doc="probe: hil's probe kernel runs ops; kernel: a foreign kernel runs whole"),
    "ops": Field("list", default=list, items=Field("map", fields=OP_FIELDS), doc="probe ops, run in order"),
    "hlt_timer_us": Field("int", default=1000, min=10, max=4_000_000,
                          doc="hlt op: microseconds until the timer interrupt wakes each HLT"),
    "kick_interval_ms": Field("int", default=20, min=1, max=10_000,
                              doc="kicks and cli-window ops: ms between the MSIs hil sends from QEMU's I/O "
                                  "thread (cli-window holds IF=0 for a quarter of it per window)"),
    "race_timeout_us": Field("int", default=20000, min=1, max=10_000_000,
                             doc="ipi-race op: an IPI not taken within this is late (a lost kick)"),
    "frame_interval_us": Field("int", default=2000, min=10, max=1_000_000,
                               doc="net-rx op: us between the frames hil sends into L2's NIC"),
    "dev_timeout_us": Field("int", default=5_000_000, min=1000, max=600_000_000,
                            doc="device ops: an interrupt (net-rx: a frame) not seen within this ends the op"),
    "kernel": Field("str", nullable=True, doc="kind kernel: a multiboot or Linux kernel"),
    "append": Field("str", default="", doc="kind kernel: its command line"),
    "initrd": Field("str", nullable=True, doc="kind kernel: an initrd for it"),
    "done_pattern": Field("str", nullable=True, doc="regex on L2's serial that ends the run"),
}
BOUND_FIELDS: dict[str, Field] = {"min": Field("int", default=0, min=0), "max": Field("int", nullable=True, min=0)}
EXPECT_FIELDS: dict[str, Field] = {
    "reasons": Field("any", default="all", doc="'all' or a list of reason names to judge"),
    "exits": Field("any", default=dict, doc="reason -> int or {min, max}, for foreign kernels"),
}
SCENARIO_FIELDS: dict[str, Field] = {
    "description": Field("str", default="", doc="one line for people (hil list)"),
    "topology": Field("str-or-map", required=True, fields=TOPOLOGY_FIELDS,
                      doc="a topology name (qemu_configs/topologies) or path, or one inline"),
    "profile": Field("str", default="auto", doc="the model profile to judge against (hil model --list); auto: stock of L1's arch, or the series'"),
    "arch": Field("enum", default="auto", choices=("auto", "svm", "vmx"),
                  doc="L1's virtualization extension; auto: whatever L1 has"),
    "groups": Field("list", default=lambda: ["default"], items=Field("str"),
                    doc="names to select scenarios by (hil list, pytest -m GROUP)"),
    "workload": Field("map", required=True, fields=WORKLOAD_FIELDS, doc="what L2 runs"),
    "expect": Field("map", default=dict, fields=EXPECT_FIELDS, doc="what is judged"),
    "host_profile": Field("str", nullable=True,
                          doc="the cost model's host profile for latency predictions: a name in "
                              "qemu_configs/host_profiles or a file `hil calibrate` wrote (--host-profile)"),
}
