"""Fixtures shared by the lab tests."""
from __future__ import annotations

import pytest

from reliability import SCENARIO, run_hil


@pytest.fixture(scope="module")
def warm_result(tmp_path_factory):
    """One run of the reliability scenario on the shared cache: its image, probe and snapshot
    exist for this checkout before a private lab links them. Returns the run's out dir. Per
    module: the tests between two modules save other topologies' snapshots, and the cache keeps
    only the newest few, so one warmed at the start of the session may be gone by then."""
    out = tmp_path_factory.mktemp("warm") / "out"
    proc = run_hil(None, "run", SCENARIO, "--accel", "tcg", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
