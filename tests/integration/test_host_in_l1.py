"""Bare-metal mode on the real stack: `hil run --host` runs inside L1, whose own KVM (kvm-amd,
nested SVM under TCG) is then the KVM under test, as on a lab box.

L1 is booted by the normal lab; hil's source (hil/, guest/, qemu_configs/), PyYAML (pure
Python: no libyaml in L1) and the probe L0 built (L1 has no compiler: the probe's cache entry
is shipped, keyed by the guest sources as on any box) go in as one tarball through the agent's
put_file; the agent's exec runs `python3 -m hil.cli run --host probe-basic` and its verdict
and result.json are read back. L1's Python is the host's own /usr/bin/python3, so bytecode
compiled here is valid there."""
from __future__ import annotations

import base64
import compileall
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from hil.lab.assets.probe import GUEST_DIR, cached_probe
from hil.paths import ROOT
from hil.runner import Runner, lab_lock
from hil.scenario import load_scenario

pytestmark = pytest.mark.lab

BOX = "/run/hil-host"          # L1's tmpfs
SCENARIO = "probe-basic"


def _tarball(stage: Path) -> bytes:
    """hil, its configs and guest sources, PyYAML and the probe's cache entry, precompiled."""
    tree = stage / "hil-host"
    for name in ("hil", "qemu_configs", "guest"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.elf"))
    shutil.copytree(Path(yaml.__file__).parent, tree / "deps/yaml",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))   # the pure-Python yaml
    probe = cached_probe(GUEST_DIR).path.parent                            # cache/hil/probe/<key>
    shutil.copytree(probe, tree / "cache/hil/probe" / probe.name, ignore=shutil.ignore_patterns("*.o"))
    compileall.compile_dir(str(tree), quiet=1, workers=0, ddir=f"{BOX}/hil-host")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tree, arcname="hil-host")
    return buf.getvalue()


def test_hil_run_host_inside_l1_passes_probe_basic(tmp_path):
    data = _tarball(tmp_path)
    sc = load_scenario(SCENARIO, root=ROOT)
    with Runner(accel="tcg") as runner, lab_lock():
        l1, _ = runner.l1_for(sc, tmp_path / "l1")
        assert l1.info["arch"] == "svm" and l1.info["kvm_dev"], l1.info

        def run(argv: list[str], timeout: float = 120, **env: str) -> dict:
            return l1.request("exec", {"argv": argv, "timeout": timeout, "env": env}, timeout=timeout + 60)

        l1.request("put_file", {"path": f"{BOX}/hil-host.tgz", "data": base64.b64encode(data).decode()},
                   timeout=300)
        got = run(["/bin/busybox", "tar", "-xzf", f"{BOX}/hil-host.tgz", "-C", BOX])
        assert got["returncode"] == 0, got
        home = f"{BOX}/hil-host"
        runs = []
        # twice: a lab box runs hil again and again on one kernel (tracefs triggers outlive a run)
        for n in (1, 2):
            got = run(["/usr/bin/python3", "-m", "hil.cli", "run", "--host", SCENARIO, "--out", f"{BOX}/out{n}"],
                      timeout=900, PYTHONPATH=f"{home}:{home}/deps:/opt/hil/lib", HIL_ROOT=home,
                      XDG_CACHE_HOME=f"{home}/cache", HOME=home, PATH="/bin:/usr/bin:/sbin:/usr/sbin")
            shown = f"run {n}: exit {got['returncode']}\nstdout:\n{got['stdout']}\nstderr:\n{got['stderr']}"
            (tmp_path / f"hil-run-host-{n}.txt").write_text(shown)
            cat = run(["/bin/busybox", "cat", f"{BOX}/out{n}/result.json"])
            assert cat["returncode"] == 0, shown + cat["stderr"]
            runs.append((got, shown, json.loads(cat["stdout"])))
    for got, shown, result in runs:
        assert got["returncode"] == 0, shown
        assert result["verdict"] == "PASS", shown
        assert result["scenario"] == SCENARIO and result["cases"], result
        assert [c["name"] for c in result["cases"] if c["verdict"] != "PASS"] == [], result["cases"]
        assert "PASS" in got["stdout"]
        # the L1 side ran on the machine hil ran on (bare metal): L1's own kvm-amd, nothing booted
        assert "bare metal" in json.dumps(result["provenance"]), shown
        assert "L2 ops: 5/5 ops" in got["stderr"], shown          # the in-process agent's op progress
    # the same workload, the same exact counts: each op's own exit reason, once per iteration
    own = {"cpuid": "cpuid", "pio-kernel": "io", "pio-user": "io", "msr": "msr", "hlt": "hlt"}
    for _, _, result in runs:
        per_op = {o["op"]: (o["count"], o["exits"].get(own[o["op"]])) for o in result["measurement"]["ops"]}
        assert per_op == {o.op: (o.count, o.count) for o in sc.workload.ops}, per_op
