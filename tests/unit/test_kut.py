"""kvm-unit-tests support on fakes: unittests.cfg parsing (old and new spellings), the
overrides a test becomes, the exit status read from L2 QEMU's exit code, and the verdict."""

import pytest

from hil import kut
from hil.lab.agent.protocol import L2Result
from hil.lab.errors import LabError
from hil.lab.request import KUT_EXIT_DEVICE, build_request
from hil.lab.results import check_result, kut_report, kut_status
from hil.paths import ROOT
from hil.scenario import ConfigError, load_scenario
from tests.unit.fakes import measurement, verdict

CFG = """\
# comment
[vmexit_cpuid]
file = vmexit.flat
test_args = 'cpuid'
groups = vmexit

[vmexit_ipi]
file = vmexit.flat
smp = 2
test_args = 'ipi'
qemu_params = -machine pit=off
groups = vmexit nodefault

[old_style]
file = apic.flat
smp = 2
extra_params = -cpu qemu64,+x2apic -append 'a b'
machine = q35
timeout = 90s

[bad_smp]
file = x.flat
smp = $MAX_SMP
"""


def test_unittests_cfg_both_spellings():
    tests = kut.parse_cfg(CFG.replace("[bad_smp]\nfile = x.flat\nsmp = $MAX_SMP\n", ""))
    assert tests["vmexit_ipi"].test_args == ("ipi",) and tests["vmexit_ipi"].qemu_params == ("-machine", "pit=off")
    assert tests["vmexit_ipi"].smp == 2 and tests["vmexit_ipi"].groups == ("vmexit", "nodefault")
    old = tests["old_style"]
    assert old.test_args == ("a b",) and old.qemu_params == ("-cpu", "qemu64,+x2apic")
    assert (old.machine, old.timeout, old.line) == ("q35", 90, 14)
    with pytest.raises(ConfigError, match=r"cfg:21: \[bad_smp\] smp.*number of vCPUs"):
        kut.parse_cfg(CFG, "cfg")


def test_selection_by_name_and_group_with_clear_errors():
    tests = kut.parse_cfg(CFG.replace("smp = $MAX_SMP", "smp = 1"))
    assert [t.name for t in kut.select(tests, [], "vmexit")] == ["vmexit_cpuid", "vmexit_ipi"]
    with pytest.raises(ConfigError, match="did you mean: vmexit_cpuid"):
        kut.select(tests, ["cpuid"], None)
    with pytest.raises(ConfigError, match=r"no test in group 'x' \(groups: nodefault, vmexit\)"):
        kut.select(tests, [], "x")


def test_a_test_becomes_the_foreign_kernel_scenario_as_x86_run_would(tmp_path):
    (tmp_path / "x86").mkdir()
    (tmp_path / "x86/vmexit.flat").write_bytes(b"\x7fELF")
    tests = kut.parse_cfg(CFG.replace("smp = $MAX_SMP", "smp = 1"))
    sc, = kut.scenarios([tests["vmexit_ipi"]], tmp_path, ROOT, [])
    assert sc.name == "kut-vmexit_ipi" and sc.workload.append == "ipi" and sc.topology.l2.smp == 2
    assert sc.topology.l2.machine == "pc" and sc.topology.l2.qemu_params[-2:] == ("-machine", "pit=off")
    argv = build_request(sc, None)[0].argv
    assert argv[-2:] == list(KUT_EXIT_DEVICE) and "pc-testdev" in argv
    with pytest.raises(ConfigError, match="apic.flat does not exist"):
        kut.scenarios([tests["old_style"]], tmp_path, ROOT, [])


@pytest.mark.parametrize("code,ended,want", [(1, "exit", 0), (3, "exit", 1), (155, "exit", 77), (0, "exit", None),
                                             (2, "exit", None), (None, "done", None), (1, "timeout", None)])
def test_kut_status_is_exit_code_shifted(code, ended, want):
    assert kut_status(code, ended) == want


def _result(exitcode, stats=None, ended="exit"):
    return L2Result([], [], [], [], stats or {}, "PASS: a\nSKIP: b\nFAIL: c d\nSUMMARY: 3 tests, 1 unexpected failures\n",
                    exitcode, ended)


def _foreign(tmp_path, *extra):
    k = tmp_path / "k.flat"
    k.write_bytes(b"\x7fELF")
    return load_scenario("foreign-kernel", root=ROOT, overrides=[f"workload.kernel={k}", *extra])


def test_a_kut_exit_is_a_normal_end_even_without_counters(tmp_path):
    sc = _foreign(tmp_path)
    check_result(_result(1), sc)                  # PASS status: no LabError though the stats are gone
    with pytest.raises(LabError, match=r"exited \(code 4\)"):
        check_result(_result(4), sc)              # an even code is QEMU failing, not kut
    assert kut_report(_result(1).serial) == {
        "lines": [{"verdict": "PASS", "text": "a"}, {"verdict": "SKIP", "text": "b"}, {"verdict": "FAIL", "text": "c d"}],
        "summary": "3 tests, 1 unexpected failures", "cycles": {}}
    assert kut_report("cr0 = 80010011\ncpuid 141204\nsmp: waiting for 0 APs\n")["cycles"] == {"cpuid": 141204}


def _judge(tmp_path, status, lines, *extra, counters=None):
    m = measurement([], exits_all={"cpuid": 5, "io": 3}, counters=counters or {},
                    payload_report={"status": status, "lines": lines, "summary": ""})
    return verdict(_foreign(tmp_path, *extra), m)


def test_kut_status_is_the_verdict_and_exits_are_reported_beside_it(tmp_path):
    r = _judge(tmp_path, 0, [{"verdict": "PASS", "text": "cpuid"}, {"verdict": "SKIP", "text": "x"}])
    assert r.verdict.value == "PASS" and [c.name for c in r.cases] == ["kut-status", "whole-run"]
    assert "1 PASS, 1 SKIP" in r.case("kut-status").detail and "no counters cross-check" in r.case("kut-status").detail
    assert {row.reason: row.measured for row in r.case("whole-run").rows} == {"cpuid": 5, "io": 3}
    assert not any(row.judged for row in r.case("whole-run").rows)
    r = _judge(tmp_path, 1, [{"verdict": "FAIL", "text": "ipi latency"}])
    assert r.verdict.value == "FAIL" and r.case("kut FAIL: ipi latency").verdict.value == "FAIL"
    assert _judge(tmp_path, 77, []).verdict.value == "SKIP"
    r = _judge(tmp_path, 0, [], "expect.exits={cpuid: 4}")
    assert r.verdict.value == "FAIL" and "cpuid: expected 4, measured 5" in r.case("whole-run").detail
