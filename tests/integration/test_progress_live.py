"""The real stack: a long workload prints a progress line per op as each op ends (the agent in
L1 reports the probe's op boundaries; L0 logs them), not all at once at the end."""
import os
import re
import subprocess
import time

import pytest

from reliability import HIL, ROOT, run_hil

pytestmark = pytest.mark.lab

SCENARIO = str(ROOT / "tests/integration/data/long-probe.yaml")
OPS = ["cpuid", "hlt", "msr", "pio-kernel"]


@pytest.mark.deep    # fast tier: progress unit tests on real make and the agent's op watch
def test_a_long_workload_prints_a_line_per_op_as_it_happens(tmp_path):
    # warm first (image, snapshot): the timed run below is the L2 run, not an image build
    warm = run_hil(None, "run", SCENARIO, "--accel", "tcg", "--out", str(tmp_path / "warm"), timeout=1800)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT), HIL_ROOT=str(ROOT))
    proc = subprocess.Popen([*HIL, "run", SCENARIO, "--accel", "tcg", "--out", str(tmp_path / "out")], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrived: list[tuple[float, str]] = []
    try:
        for line in proc.stderr:                     # a pipe, not a terminal: plain lines
            arrived.append((time.monotonic(), line.rstrip("\n")))
        out = proc.stdout.read()
        assert proc.wait(900) == 0, out + "\n".join(l for _, l in arrived)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ops = [(t, l) for t, l in arrived if "L2 ops:" in l]
    text = "\n".join(l for _, l in arrived)
    assert [re.search(r"L2 ops: (\d+)/4 ops", l).group(1) for _, l in ops] == ["1", "2", "3", "4"], text
    assert [re.search(r"\) (\S+) ended", l).group(1) for _, l in ops] == OPS, text
    assert all(re.match(r"\d\d:\d\d:\d\d hil: ", l) for _, l in ops), text
    assert ops[-1][1].endswith("done")
    # the 2000 HLTs (1 ms timer each) separate the first two lines: each came when its op ended
    assert ops[1][0] - ops[0][0] >= 1.5, [round(t - ops[0][0], 1) for t, _ in ops]
