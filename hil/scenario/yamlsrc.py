"""YAML with a line for every value: plain data plus a map from dotted key paths to 1-based
line numbers, built straight from the parser's event stream.

hil configs are small, hand-written files, so this reads a deliberately narrow YAML: one
document of mappings, lists and scalars, at most MAX_BYTES, MAX_DEPTH levels and MAX_NODES
values. Tags, anchors, aliases, merge keys and non-scalar keys are refused with the file,
line and key, which keeps loading bounded in time and memory (no alias bombs, no recursion:
the event loop keeps its own stack)."""
from __future__ import annotations

import codecs
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hil.scenario.errors import ConfigError

MAX_BYTES = 1 << 20      # a config is a few KiB; 1 MiB is generous and loads in well under a second
MAX_DEPTH = 64
MAX_NODES = 20_000       # values in one file (the shipped configs have ~100); ~0.3 s to refuse
MAX_KEY = 200            # characters in one key
MAX_PATH = 2000          # characters in a dotted key path: every value's path is kept (for its line)


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


def read_config_bytes(path: Path, file: str, limit: int = MAX_BYTES) -> bytes:
    """The file's bytes, refusing anything that is not a regular file of at most `limit`
    bytes. O_NONBLOCK so a FIFO is refused instead of blocking for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(file, None, "", f"cannot read: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(file, None, "", "is a directory, not a config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(file, None, "", f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise ConfigError(file, None, "", f"file is {st.st_size} bytes; a config may be at most {limit}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)      # the size can change after fstat (or lie, as in /proc)
    except OSError as e:
        raise ConfigError(file, None, "", f"cannot read: {e.strerror or e}") from e
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(file, None, "", f"file is over {limit} bytes; a config may be at most {limit}")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def decode_text(data: bytes, file: str) -> str:
    """UTF-8 text without NUL bytes, or a ConfigError naming the line."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise ConfigError(file, 1, "", f"the file is {name} text; hil configs are UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        raise ConfigError(file, data.count(b"\n", 0, nul) + 1, "", f"NUL byte at offset {nul}: not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(file, line, "", f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
                                          f"({e.reason})") from e


# A throw-away SafeLoader instance: only its resolver (plain text -> tag) and its constructors
# (tag -> int, bool, null, float, timestamp, str) are used, never its composer.
_RESOLVER = yaml.SafeLoader("")
_MERGE = "tag:yaml.org,2002:merge"
_AS_TEXT = {_MERGE, "tag:yaml.org,2002:value"}   # `<<` / `=` as a value are just text
_STR = "tag:yaml.org,2002:str"
_SURROGATE = re.compile("[\ud800-\udfff]")
_BIG_ESCAPE = re.compile(r"\\U([0-9A-Fa-f]{8})")


def _scalar(ev: yaml.ScalarEvent, file: str, path: str) -> Any:
    if ev.style == '"' and _SURROGATE.search(ev.value):     # "\ud800": not text, cannot be printed
        raise ConfigError(file, ev.start_mark.line + 1, path, "a \\u escape names a lone surrogate, not a character")
    tag = _RESOLVER.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    if tag in _AS_TEXT or tag == _STR:
        return ev.value
    node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
    try:
        return yaml.SafeLoader.yaml_constructors[tag](_RESOLVER, node)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, yaml.YAMLError) as e:
        # e.g. 2024-13-45 (a date by its shape, not a real one) or an int of 5000 digits
        raise ConfigError(file, ev.start_mark.line + 1, path,
                          f"cannot read {ev.value[:40]!r} as {tag.rsplit(':', 1)[-1]} ({e}); "
                          f"quote it if it is text") from e


class _Frame:
    """A mapping or list being built: its data, its path and (for a mapping) the key whose
    value comes next."""
    __slots__ = ("data", "key", "key_line", "path")

    def __init__(self, data: dict[str, Any] | list[Any], path: str):
        self.data, self.path = data, path
        self.key: str | None = None
        self.key_line = 0


def _refuse_extras(ev: yaml.Event, file: str, path: str) -> None:
    line = ev.start_mark.line + 1
    if isinstance(ev, yaml.AliasEvent):
        raise ConfigError(file, line, path, f"aliases (*{ev.anchor}) are not supported in hil configs: "
                                            "write the value out")
    if getattr(ev, "anchor", None) is not None:
        raise ConfigError(file, line, path, f"anchors (&{ev.anchor}) are not supported in hil configs: "
                                            "write the value out")
    tag = getattr(ev, "tag", None)
    if tag is not None:
        raise ConfigError(file, line, path, f"YAML tags ({tag}) are not supported in hil configs: "
                                            "write a plain value (quote it for text)")


def _events_to_data(text: str, file: str, lines: dict[str, int]) -> Any:
    """Build plain data from the event stream with an explicit stack (no recursion)."""
    stack: list[_Frame] = []
    root: Any = None
    have_root = False
    nodes = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)):
            continue
        if isinstance(ev, yaml.DocumentStartEvent):
            if have_root:
                raise ConfigError(file, ev.start_mark.line + 1, "", "a config is one YAML document; found another")
            continue
        if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            done = stack.pop()
            _attach(stack, done.data)
            continue
        top = stack[-1] if stack else None
        line = ev.start_mark.line + 1
        if top is not None and isinstance(top.data, dict) and top.key is None:
            # This event is a key.
            if not isinstance(ev, yaml.ScalarEvent):
                what = "a list" if isinstance(ev, yaml.SequenceStartEvent) else \
                    "a mapping" if isinstance(ev, yaml.MappingStartEvent) else "an alias"
                raise ConfigError(file, line, top.path or "", f"a key must be plain text, not {what}")
            _refuse_extras(ev, file, top.path)
            if ev.value == "<<" and ev.implicit[0]:
                raise ConfigError(file, line, _sub(top.path, "<<"),
                                  "merge keys (<<) are not supported in hil configs: write the keys out")
            if len(ev.value) > MAX_KEY:
                raise ConfigError(file, line, top.path, f"a key of {len(ev.value)} characters "
                                                        f"(at most {MAX_KEY}): {ev.value[:40]!r}...")
            sub = _sub(top.path, ev.value)     # the text as written: "on" stays "on", not True
            if ev.value in top.data:
                raise ConfigError(file, line, sub, "duplicate key")
            top.key, top.key_line = ev.value, line
            continue
        path = "" if top is None else (f"{top.path}[{len(top.data)}]" if isinstance(top.data, list)
                                       else _sub(top.path, top.key or ""))
        _refuse_extras(ev, file, path)
        if len(path) > MAX_PATH:    # bounds the memory the paths take: MAX_NODES x MAX_PATH
            raise ConfigError(file, line, path[:80] + "...", f"key path longer than {MAX_PATH} characters")
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(file, line, path, f"more than {MAX_NODES} values: too large for a config")
        # A mapping value's line is its key's (a nested map starts on the line after).
        lines[path] = top.key_line if top is not None and isinstance(top.data, dict) else line
        if isinstance(ev, yaml.ScalarEvent):
            value = _scalar(ev, file, path)
            if top is None:
                root, have_root = value, True
            else:
                _attach(stack, value)
        elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= MAX_DEPTH:
                raise ConfigError(file, line, path, f"nested more than {MAX_DEPTH} levels deep")
            frame = _Frame({} if isinstance(ev, yaml.MappingStartEvent) else [], path)
            if top is None:
                root, have_root = frame.data, True
            stack.append(frame)
    return root if have_root else {}


def _sub(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _attach(stack: list[_Frame], value: Any) -> None:
    """Put a finished value into its parent (the root has none)."""
    if not stack:
        return
    parent = stack[-1]
    if isinstance(parent.data, list):
        parent.data.append(value)
    else:
        parent.data[parent.key or ""] = value
        parent.key = None


def load_yaml(path: Path, display: str | None = None) -> Located:
    file = display or str(path)
    text = decode_text(read_config_bytes(path, file), file)
    lines: dict[str, int] = {"": 1}      # an empty file still has a line to point at
    return Located(parse_text(text, file, lines), file, lines)


def parse_value(raw: str, where: str) -> Any:
    """A --set value, read with the same narrow YAML as the files (no tags, anchors or aliases,
    bounded depth and size); mistakes name the override `where`."""
    if len(raw) > MAX_BYTES:
        raise ConfigError("--set", None, where, f"value is over {MAX_BYTES} characters")
    try:
        return parse_text(raw, "--set", {}) if raw else ""
    except ConfigError as e:
        raise ConfigError("--set", None, where, e.message) from e


def parse_text(text: str, file: str, lines: dict[str, int]) -> Any:
    """Plain data from YAML text, filling `lines`; any YAML problem is a ConfigError."""
    try:
        return _events_to_data(text, file, lines)
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigError(file, mark.line + 1 if mark else None, "", f"YAML syntax: {e.problem or e.context}") from e
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "\0")
        raise ConfigError(file, line, "", f"control character #x{code:04x} is not allowed in YAML text") from e
    except yaml.YAMLError as e:
        raise ConfigError(file, None, "", f"YAML syntax: {e}") from e
    except (ValueError, OverflowError) as e:
        # PyYAML's scanner calls chr() on "\UXXXXXXXX" escapes unchecked (chr(0x99999999) raises).
        bad = next((m for m in _BIG_ESCAPE.finditer(text) if int(m.group(1), 16) > 0x10FFFF), None)
        line = text.count("\n", 0, bad.start()) + 1 if bad else None
        raise ConfigError(file, line, "", f"YAML syntax: {bad.group() if bad else 'an escape'} is not a "
                                          "Unicode character") from e
