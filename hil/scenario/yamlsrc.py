"""YAML with a line for every value: compose the node tree, then build plain data and a
map from dotted key paths to 1-based line numbers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil.scenario.errors import ConfigError


@dataclass
class Located:
    """Plain data plus where each piece came from."""
    data: Any
    file: str
    lines: dict[str, int] = field(default_factory=dict)   # "a.b[2].c" -> line
    overridden: dict[str, str] = field(default_factory=dict)   # key -> the --set text that set it

    def line(self, key: str) -> int | None:
        # The closest ancestor that has a line (an override or a missing key has none).
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rsplit(".", 1)[0] if "." in key else (key.rsplit("[", 1)[0] if "[" in key else "")
        return self.lines.get("")

    def error(self, key: str, message: str) -> ConfigError:
        for k, text in self.overridden.items():
            if key == k or key.startswith(k + ".") or key.startswith(k + "["):
                return ConfigError("--set", None, text, message)
        return ConfigError(self.file, self.line(key), key, message)


def _build(node: yaml.Node, path: str, lines: dict[str, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            key = str(knode.value)   # the text as written: "on" stays "on", not True
            sub = f"{path}.{key}" if path else key
            if key in out:
                raise ConfigError(file, knode.start_mark.line + 1, sub, "duplicate key")
            out[key] = _build(vnode, sub, lines, file)
            lines[sub] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, f"{path}[{i}]", lines, file) for i, v in enumerate(node.value)]
    # Scalars: let the safe loader resolve the tag (int, bool, null, str).
    return yaml.safe_load(yaml.serialize(node))


def load_yaml(path: Path, display: str | None = None) -> Located:
    file = display or str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(file, None, "", f"cannot read: {e.strerror}") from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(file, mark.line + 1 if mark else None, "", f"YAML syntax: {getattr(e, 'problem', e)}") from e
    lines: dict[str, int] = {}
    data = _build(node, "", lines, file) if node is not None else {}
    return Located(data, file, lines)
