"""hil run --host on fakes of this machine: the session the runner uses instead of an L1,
its clear SKIPs (no VMX/SVM, no root, no /dev/kvm), and requests served by the in-process
agent (the same code L1 runs)."""

import pytest

from hil.lab import bare_metal
from hil.lab.errors import CapabilityMissing, LabError
from hil.paths import ROOT
from hil.runner import Runner
from hil.scenario import load_scenario

INFO = {"arch": "svm", "kvm_dev": True, "tracefs": True, "kvm_modules_missing": [], "cpu_model": "fake"}


@pytest.fixture
def here(tmp_path, monkeypatch):
    import hil.lab.agent.early as early
    import hil.lab.agent.service as service
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))     # a lab lock of its own
    monkeypatch.setattr(early, "RUN_DIR", tmp_path / "run")
    info = dict(INFO)
    monkeypatch.setattr(service, "host_info", lambda: info)
    return info


def test_a_host_session_serves_requests_with_the_agents_code(here, tmp_path):
    s = bare_metal.HostSession(tmp_path / "logs")
    s.start()
    assert s.machine.is_running() and s.info["arch"] == "svm" and not s.boot_argv
    s.put_file(str(tmp_path / "run/payload/kernel"), b"\x7fELF")
    assert (tmp_path / "run/payload/kernel").read_bytes() == b"\x7fELF"
    assert s.request("hello")["cpu_model"] == "fake"
    with pytest.raises(LabError, match="host agent: KeyError"):
        s.request("no-such-command")
    assert '"arch": "svm"' in s.console_log.read_text()


@pytest.mark.parametrize("change,message", [({"kvm_dev": False}, "no /dev/kvm"), ({"arch": "none"}, "no VMX/SVM")])
def test_a_machine_that_cannot_run_l2_is_a_skip_with_the_reason(here, tmp_path, change, message):
    here.update(change)
    sc = load_scenario("probe-counts-small", root=ROOT)
    with Runner(host=True) as runner:
        r = runner.run(sc, tmp_path / "out")
    assert r.verdict.value == "SKIP" and message in r.error, r.error


def test_host_mode_needs_root(here, tmp_path, monkeypatch):
    monkeypatch.setattr(bare_metal.os, "geteuid", lambda: 1000)
    with pytest.raises(CapabilityMissing, match="needs root"):
        bare_metal.HostSession(tmp_path).start()
