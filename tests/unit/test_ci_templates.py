"""The CI templates in docs/ci call hil the way hil parses it: every `hil run` line names
groups that exist and flags `hil run` knows."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from hil.batch import select
from hil.paths import ROOT

TEMPLATES = sorted((ROOT / "docs/ci").glob("*.yml"))


def hil_runs(path: Path) -> list[list[str]]:
    text = path.read_text()
    yaml.safe_load(text)                       # well-formed
    runs = []
    for m in re.finditer(r"\.venv/bin/hil run ([^\n|&;]*)", text):
        words = shlex.split(m.group(1).replace('"$GROUP"', "smoke").replace("\"$REPEAT\"", "1"), comments=True)
        runs.append(words)
    return runs


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_run_existing_groups_with_known_flags(path, monkeypatch):
    import hil.cli as cli
    runs = hil_runs(path)
    assert runs, f"{path} runs no hil batch"
    seen = []
    monkeypatch.setattr(cli, "cmd_run_or_batch", lambda args: seen.append(args) or 0)
    for words in runs:
        assert cli.main(["run", *words]) == 0, words
        args = seen[-1]
        if args.group:
            assert select([], args.group, ROOT)
    assert {a.group for a in seen} >= {"smoke"}
