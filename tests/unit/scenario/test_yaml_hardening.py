"""The YAML reader refuses hostile or careless input with FILE:LINE: KEY, in bounded time:
the reproducers of the 2026-12-02 reliability review (I1-I5, I12, F1-F5, F22-F26, F43-F47,
F57, F65-F69) plus the shapes around them."""
import os
import time
from pathlib import Path

import pytest

from hil.scenario import ConfigError, load_scenario
from hil.scenario.errors import printable
from hil.scenario.yamlsrc import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_KEY,
    MAX_PATH,
    load_yaml,
    parse_value,
)

ROOT = Path(__file__).resolve().parents[3]
WL = "workload:\n  kind: probe\n  ops:\n    - {op: cpuid, count: 4}\n"


def load(tmp_path: Path, content: str | bytes):
    p = tmp_path / "f.yaml"
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return load_yaml(p, "F")


def refused(tmp_path: Path, content: str | bytes, budget: float = 2.0) -> str:
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load(tmp_path, content)
    assert time.monotonic() - t0 < budget
    return str(e.value)


@pytest.mark.parametrize("text,data", [
    ("a:\n", {"a": None}),                                   # I1: `key:` with nothing is null
    ("a:\nb: 2\n", {"a": None, "b": 2}),
    ("- \n- x\n", [None, "x"]),                              # an empty list item
    ("? a\n", {"a": None}),                                  # a complex-key marker with no value
    ("a: [~, ]\n", {"a": [None]}),
    ("topology:\n  l1:\n    series:\n    smp: 2\n", {"topology": {"l1": {"series": None, "smp": 2}}}),   # F69
    ("on: off\n", {"on": False}),                            # keys are the text as written
    ("a: =\nb: <<\n'<<': 1\n", {"a": "=", "b": "<<", "<<": 1}),
    ("n: 0x10\nf: 1.5\nt: yes\ns: 'yes'\nd: 2024-01-01\n", None),
])
def test_empty_and_plain_values_load(tmp_path, text, data):
    got = load(tmp_path, text).data
    if data is not None:
        assert got == data
    else:
        import datetime
        assert got == {"n": 16, "f": 1.5, "t": True, "s": "yes", "d": datetime.date(2024, 1, 1)}


def test_lines_follow_keys_and_items(tmp_path):
    src = load(tmp_path, "topology:\n  l1:\n    smp: 2\n" + WL)
    assert src.line("topology.l1.smp") == 3 and src.line("workload.ops[0]") == 7
    assert src.line("workload.ops[0].count") == 7 and src.line("workload.nope") == 4


@pytest.mark.parametrize("text,expected", [
    ("", "F:1: <top>"), ("# nothing\n", "F:1: <top>"),
])
def test_empty_file_names_file_and_line(tmp_path, text, expected):
    src = load(tmp_path, text)
    assert src.data == {} and str(src.error("", "missing required key 'topology'")).startswith(expected)


@pytest.mark.parametrize("text,expected", [
    ("a: !!int hlt\n", "F:1: a: YAML tags (tag:yaml.org,2002:int) are not supported"),
    ("!!bool maybe\n", "F:1: <top>: YAML tags"),
    ("a: !!float abc\n", "F:1: a: YAML tags"),
    ("description: !!timestamp yesterday\n", "F:1: description: YAML tags"),                   # F68
    ("a: !!set x\n", "F:1: a: YAML tags"),
    ("topology: nested-svm\ndescription: !foo bar\n", "F:2: description: YAML tags (!foo)"),  # F47
    ("d: !!python/object/apply:os.system ['touch pwned']\n", "F:1: d: YAML tags"),           # F48
    ("a: ! x\n", "F:1: a: YAML tags (!)"),
    ("!!str k: 1\n", "F:1: <top>: YAML tags"),
    ("w:\n  ops:\n    - {op: !!int cpuid, count: 4}\n", "F:3: w.ops[0].op: YAML tags"),        # F66
])
def test_tags_refused(tmp_path, text, expected):
    assert refused(tmp_path, text).startswith(expected)


@pytest.mark.parametrize("text,expected", [
    ("a: &x\n", "F:1: a: anchors (&x) are not supported"),
    ("a: &x 1\nb: *x\n", "F:1: a: anchors (&x)"),
    ("groups: &g [*g]\n", "F:1: groups: anchors (&g)"),                                     # F23
    ("a: *nowhere\n", "F:1: a: aliases (*nowhere) are not supported"),
    ("&k key: 1\n", "F:1: <top>: anchors (&k)"),
])
def test_anchors_and_aliases_refused(tmp_path, text, expected):
    assert refused(tmp_path, text).startswith(expected)


def test_billion_laughs_refused_fast(tmp_path):     # F22: 9 levels of 10 aliases each
    text = "topology: nested-svm\na0: &a0 [" + ", ".join(["lol"] * 10) + "]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9)) + WL
    assert "anchors (&a0) are not supported" in refused(tmp_path, text, budget=0.5)


def test_merge_key_refused_with_hint(tmp_path):     # F24
    msg = refused(tmp_path, "topology:\n  l1:\n    <<: {smp: 2}\n")
    assert msg == "F:3: topology.l1.<<: merge keys (<<) are not supported in hil configs: write the keys out"


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "{? {a: 1}: 2}\n", "? - a\n: 1\n"])
def test_complex_keys_refused(tmp_path, text):     # F45: no ScalarNode reprs
    msg = refused(tmp_path, text)
    assert "a key must be plain text" in msg and "Node(" not in msg


@pytest.mark.parametrize("text", [
    "a: " + "[" * 50000 + "]" * 50000 + "\n",                                  # F25
    "a: " + "{a: " * 1000 + "}" * 1000 + "\n",
    "".join("  " * i + "a:\n" for i in range(MAX_DEPTH + 2)) + "  " * (MAX_DEPTH + 2) + "x\n",   # F26, smaller
    "- " * 200 + "x\n",
])
def test_deep_nesting_refused(tmp_path, text):
    assert f"nested more than {MAX_DEPTH} levels deep" in refused(tmp_path, text)


def test_nesting_up_to_the_limit_loads(tmp_path):
    src = load(tmp_path, "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    depth, v = 0, src.data["a"]
    while isinstance(v, list) and v:
        v, depth = v[0], depth + 1
    assert depth == MAX_DEPTH - 2


def test_huge_file_refused_before_reading(tmp_path):     # F57, I12: refused by size, at once
    p = tmp_path / "big.yaml"
    with open(p, "wb") as f:
        f.write(b"description: \"")
        f.seek(30 << 20)
        f.write(b"\"\n")
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_yaml(p, "F")
    assert time.monotonic() - t0 < 0.1
    assert str(e.value) == f"F: <top>: file is {(30 << 20) + 2} bytes; a config may be at most {MAX_BYTES}"


def test_many_values_refused_in_bounded_time(tmp_path):
    assert "too large for a config" in refused(tmp_path, "- a\n" * 250000, budget=3.0)


@pytest.mark.parametrize("content,expected", [
    (bytes(range(1, 256)) * 4, "F:2: <top>: not UTF-8 text: byte 0x80 at offset 127"),            # F3
    ("topology: nested-svm\ndescription: café\n".encode("latin-1"), "F:2: <top>: not UTF-8 text: byte 0xe9"),  # F4
    ("topology: nested-svm\n".encode("utf-16"), "F:1: <top>: the file is UTF-16 text; hil configs are UTF-8"),  # F5
    (b"a: 1\nb: x\0y\n", "F:2: <top>: NUL byte at offset 9: not a text file"),
    (b"a: b\x01c\n", "F:1: <top>: control character #x0001 is not allowed in YAML text"),
])
def test_encoding_errors_name_the_line(tmp_path, content, expected):
    assert refused(tmp_path, content).startswith(expected)


def test_non_regular_files_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, why in ((fifo, "not a regular file (a FIFO)"), (Path("/dev/zero"), "a character device"),
                      (tmp_path, "is a directory")):
        t0 = time.monotonic()
        with pytest.raises(ConfigError) as e:
            load_yaml(path, "F")
        assert why in str(e.value) and time.monotonic() - t0 < 1.0


def test_bad_dates_and_huge_ints_are_config_errors(tmp_path):
    assert refused(tmp_path, "a: 2024-13-45\n").startswith("F:1: a: cannot read '2024-13-45' as timestamp")
    assert refused(tmp_path, "a: " + "1" * 5000 + "\n").startswith("F:1: a: cannot read")


def test_second_document_and_syntax_errors(tmp_path):
    assert refused(tmp_path, "a: 1\n---\nb: 2\n") == "F:2: <top>: a config is one YAML document; found another"
    assert refused(tmp_path, "a:\n\tb: 1\n").startswith("F:2: <top>: YAML syntax: found character '\\t'")


def test_duplicate_key(tmp_path):
    assert refused(tmp_path, "a: 1\nb: 2\na: 3\n") == "F:3: a: duplicate key"


def test_messages_escape_control_characters_and_cap_length():
    e = ConfigError("--set", None, "a\nb\x1b[31m" + "k" * 500, "bad")
    text = str(e)
    assert "\n" not in text and "\x1b" not in text and "\\n" in text and "(508 characters)" in text
    assert str(ConfigError("", None, "", "x")) == "'': <top>: x"
    assert printable("ok") == "ok"


def test_empty_series_value_is_no_series(tmp_path):     # F69: used to be a ParserError traceback
    p = tmp_path / "F69.yaml"
    p.write_text("topology:\n  l1:\n    series:\n    smp: 2\n" + WL)
    assert load_scenario(str(p), root=ROOT).topology.l1.series is None


@pytest.mark.parametrize("name,text", [
    ("F66", "topology: nested-svm\nworkload:\n  ops:\n    - {op: !!int cpuid, count: 4}\n"),
    ("F47", "topology: nested-svm\ndescription: !foo bar\n" + WL),
    ("F23", "topology: nested-svm\ngroups: &g [*g]\n" + WL),
])
def test_review_cases_through_load_scenario(tmp_path, name, text):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_scenario(str(p), root=ROOT)
    assert f"{name}.yaml:" in str(e.value)


def test_escapes_that_are_not_characters(tmp_path):
    assert refused(tmp_path, 'a: 1\nb: "\\U99999999"\n') == "F:2: <top>: YAML syntax: \\U99999999 is not a Unicode character"
    assert refused(tmp_path, 'a: "\\ud800"\n') == "F:1: a: a \\u escape names a lone surrogate, not a character"
    assert load(tmp_path, 'a: "\\U0001F600"\n').data == {"a": "\U0001F600"}


@pytest.mark.parametrize("raw,message", [
    ("!!int x", "YAML tags"), ("!!bool maybe", "YAML tags"), ("&a [*a]", "anchors (&a)"),
    ("9" * 5000, "cannot read"), ("[1,2", "YAML syntax"), ("[" * 100, "nested more than"),
])
def test_parse_value_for_set_overrides(raw, message):
    """The same narrow YAML for --set values (for the loader's _parse_override)."""
    with pytest.raises(ConfigError) as e:
        parse_value(raw, f"description={raw}")
    assert str(e.value).startswith(f"--set {printable('description=' + raw)}: ") and message in str(e.value)
    assert parse_value("[1, on, ~]", "x") == [1, True, None] and parse_value("", "x") == ""


def test_long_keys_and_paths_are_refused_before_they_cost_memory(tmp_path):
    # A 400 kB key over 15,000 list items used to keep 15,000 copies of the key (6 GB, 50 s).
    msg = refused(tmp_path, "? " + "k" * 400000 + "\n: [" + "a," * 15000 + "]\n", budget=2.0)
    assert msg.startswith(f"F:1: <top>: a key of 400000 characters (at most {MAX_KEY})")
    deep = "".join("  " * i + "k" * 190 + f"{i}:\n" for i in range(60)) + "  " * 60 + "x\n"
    assert f"key path longer than {MAX_PATH} characters" in refused(tmp_path, deep)
