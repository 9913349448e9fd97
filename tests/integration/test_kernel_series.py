"""The series pipeline on the real stack: Debian's source, our patches, an out-of-tree kvm
build from a clean cache, a cache hit, and an L1 that loads the rebuilt modules."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.lab.assets.kernel_line import resolve_cached

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def hil(*args, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.deep    # fast tier: make kernels builds the same way; the series tests load its modules
def test_build_from_clean_cache_then_cache_hit(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    first = hil("kernel", "build", "--series", "dedicated-cpu", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("built: ")
    second = hil("kernel", "build", "--series", "dedicated-cpu", env=env)
    assert second.returncode == 0 and second.stdout.startswith("cache hit: ")
    modules = Path(second.stdout.split()[2])
    params = subprocess.run(["modinfo", "-p", str(modules / "kvm.ko")], capture_output=True, text=True).stdout
    assert "hil_series" in params
    for ko in ("kvm.ko", "kvm-amd.ko", "kvm-intel.ko"):
        vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(modules / ko)], capture_output=True, text=True)
        assert vermagic.stdout.split()[0] == resolve_cached("debian:linux-image-6.1").release
    prov = json.loads((modules.parent / "provenance.json").read_text())
    # source, headers and image: the one upload the line resolved to
    assert prov["source_version"] == prov["headers_version"] == prov["base"]["image_version"]
    assert prov["patches"][0]["file"] == "0001-kvm-name-the-hil-series.patch" and prov["compiler"].startswith("gcc")


def test_l1_loads_the_series_modules_and_the_model_still_holds(tmp_path):
    out = tmp_path / "out"
    proc = hil("run", "probe-dedicated-series", "--accel", "tcg", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["provenance"]["l1"]["agent"]["kvm_params"]["kvm"]["hil_series"] == "dedicated-cpu"
    assert result["provenance"]["l1"]["image"]["series"]["series"] == "dedicated-cpu"
    assert result["verdict"] == "PASS"


def test_dedicated_mode_takes_hlt_exits_away(tmp_path):
    """Same kernel, same probe: stock mode gives one hlt exit per HLT, dedicated mode none
    (KVM_SET_DEDICATED issued by hil in QEMU's vCPU thread before the guest runs)."""
    def run(scenario):
        out = tmp_path / scenario
        proc = hil("run", scenario, "--accel", "tcg", "--out", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads((out / "result.json").read_text())

    stock, dedicated = run("probe-dedicated-series"), run("probe-dedicated-hlt")
    hlt_stock = next(o for o in stock["measurement"]["ops"] if o["op"] == "hlt")
    hlt_ded = next(o for o in dedicated["measurement"]["ops"] if o["op"] == "hlt")
    assert hlt_stock["exits"]["hlt"] == hlt_stock["count"] > 0
    # each expiry is an interrupt exit, or (expired before entry) waits for the interrupt window
    assert "hlt" not in hlt_ded["exits"]
    assert hlt_ded["exits"].get("interrupt", 0) + hlt_ded["exits"].get("vintr", 0) >= hlt_ded["count"]
    injected = dedicated["provenance"]["l2"]["injected"]
    assert injected == [{"vcpu": 0, "request": 0xAEAF, "arg": 1, "result": 0}]
    assert dedicated["verdict"] == "PASS"


@pytest.mark.deep    # fast tier: test_direct boots the whole-kernel dedicated-cpu-direct
def test_a_series_that_touches_core_code_is_built_whole_and_l1_boots_it(tmp_path):
    """build: full-kernel (kernel_patches/core-marker): Debian's whole source, the patch to
    init/main.c, tinyconfig + what L1 needs; L1 boots that bzImage and the model holds."""
    out = tmp_path / "out"
    proc = hil("run", "probe-core-marker", "--accel", "tcg", "--out", str(out), "--set", "topology.l1.snapshot=false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["verdict"] == "PASS"
    assert result["provenance"]["l1"]["agent"]["kernel"].endswith("-hil-core-marker")    # L1's uname -r
    assert result["provenance"]["l1"]["image"]["series"]["build"] == "full-kernel"
    assert "hil: kernel_patches/core-marker built in" in (out / "l1-console.log").read_text(errors="replace")
    # a whole kernel has no qemu_fw_cfg: the boot request goes unseen, the run uploads and starts L2
    assert "boot_l2" not in result["provenance"]["l1"]["agent"]
    assert result["provenance"]["l2"]["qemu_start"] == "at the run"
