"""Direct delivery on the real nested stack (kernel_patches/dedicated-cpu-direct, issue 10):
L1 boots the whole kernel hil builds (cached, so a warm suite does not rebuild it) in x2APIC
mode behind intel-iommu; vCPU 0 runs in direct mode on L1's isolated CPU 1."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path, scenario, *sets):
    out = tmp_path / scenario
    argv = [sys.executable, "-m", "hil.cli", "run", scenario, "--accel", "tcg", "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    result = json.loads((out / "result.json").read_text())
    return proc, result


def case(result, name):
    return next(c for c in result["cases"] if c["name"] == name)


def test_relayed_msis_reach_the_guest_with_no_exit_and_l1_stays_healthy(tmp_path):
    proc, result = run(tmp_path, "direct-msi-burst")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = result["measurement"]
    op = next(o for o in m["ops"] if o["op"] == "kicks")
    assert op["reported"]["irqs"] == op["count"] == 16
    # neither the MSIs nor their EOIs exit: no interrupt, no msr exit in the op's code; an nmi
    # exit there is a host-originated request (a kvmclock update, deferred host work), each
    # accounted for by the verdict's kick and deferred-work traces (the run PASSes only then)
    assert op["exits"].get("interrupt", 0) == 0 and op["exits"].get("msr", 0) == 0, op["exits"]
    assert set(op["exits"]) <= {"nmi"}, op["exits"]
    assert m["kick_trace"]["relays"] == 16 and m["kick_trace"]["forwards"] == 0
    # a series that touches core code (0005) is built whole and L1 boots that bzImage
    l1 = result["provenance"]["l1"]
    assert l1["image"]["series"]["build"] == "full-kernel" and l1["agent"]["kernel"].endswith("-hil-direct")
    health = dict(m["l1_health"])
    assert isinstance(health.pop("tick"), dict)        # L1's tick on CPU 1, traced (told, not judged)
    assert health == {"agent_answers": True, "agent_error": "", "console_problems": [], "leaks": 0,
                      "l1_isr": []}     # nothing left in service in L1's APIC of CPU 1
    assert result["provenance"]["l1"]["agent"]["kernel"].endswith("-hil-direct")
    assert result["provenance"]["l2"]["injected"][0] == {"vcpu": 0, "request": 0xAEAF, "arg": 3, "result": 0}
    assert result["verdict"] == "PASS"


@pytest.mark.parametrize("n", [37, pytest.param(203, marks=pytest.mark.deep)])
def test_assigned_edu_msis_retargeted_by_the_iommu_reach_the_guest_with_no_exit(tmp_path, n):
    """The edu device's MSI (0010): KVM's irq bypass pointed its remapped IRTE in L1 at CPU 1
    with the guest's vector, so L1's (QEMU's) intel-iommu delivers it there: no vfio interrupt
    in L1, no eventfd, no relay; no interrupt and no msr exit in the op."""
    proc, result = run(tmp_path, "direct-vfio-edu", f"workload.ops.0.count={n}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = result["measurement"]
    op = next(o for o in m["ops"] if o["op"] == "dev-msi")
    assert op["count"] == n and op["reported"]["irqs"] == n
    assert op["exits"].get("interrupt", 0) == 0 and op["exits"].get("msr", 0) == 0, op["exits"]
    # host requests only, traced (the verdict checks); no vintr exit at the op's sti: 0011 closes the
    # window the firmware's PIT left open with nothing to inject (kernel_patches/README.md)
    assert set(op["exits"]) <= {"nmi"}, op["exits"]
    assert m["kick_trace"]["retargets"] >= 1 and m["kick_trace"]["retarget_failures"] == 0
    assert m["kick_trace"]["relays"] == 0 and m["kick_trace"]["forwards"] == 0   # none relayed, none caught in root mode
    assert m["devices"]["vfio-pci"]["host"]["host_irqs"]["total"] == 0     # nor through VFIO's handler
    assert case(result, "l1-health")["verdict"] == "PASS"
    assert m["l1_health"]["leaks"] == 0 and m["l1_health"]["l1_isr"] == []
    assert result["verdict"] == "PASS"


@pytest.mark.parametrize("n", [8, pytest.param(61, marks=pytest.mark.deep)])
def test_the_guest_timer_in_the_physical_lapic_expires_with_no_exit(tmp_path, n):
    """K4 (0007-0009): the guest's one-shot x2APIC timer is the CPU's own for each direct entry:
    the TMICT write, the expiry and its EOI make no exit, and every hlt is woken by the timer
    (0009: a spent one-shot whose vector QEMU has not raised yet survives the next entry)."""
    proc, result = run(tmp_path, "direct-timer", f"workload.ops.1.count={n}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hlt = next(o for o in result["measurement"]["ops"] if o["op"] == "hlt")
    # every expiry taken (the probe fails on a count mismatch), none missed; a hlt ends early only
    # by an exit (SVM resumes after the hlt and the probe halts again): at most one per nmi exit
    nmi = hlt["exits"].get("nmi", 0)
    assert hlt["count"] == n and n <= hlt["reported"]["hlts"] <= n + nmi, (hlt["reported"], hlt["exits"])
    # no interrupt, no hlt exit; no msr exit (TMICT, EOI) but one a host request's nmi exit may
    # cost (the timer KVM's until the next entry: direct-timer-host-request; seen 1 in 61)
    assert set(hlt["exits"]) <= {"nmi", "msr"}, hlt["exits"]
    assert hlt["exits"].get("msr", 0) <= hlt["exits"].get("nmi", 0), hlt["exits"]
    assert case(result, "l1-health")["verdict"] == "PASS"
    assert result["verdict"] == "PASS"


def test_direct_mode_is_refused_on_a_cpu_that_is_not_isolated(tmp_path):
    """The kernel checks the preconditions: vCPU 0 pinned to L1 CPU 0 (a housekeeping CPU)."""
    proc, result = run(tmp_path, "direct-msi-burst", "topology.l2.pin=[0, 1]")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "failed: errno 1" in result["error"]          # EPERM: not an isolated nohz_full CPU


@pytest.mark.deep    # known 1-in-1000 loss, xfail
@pytest.mark.xfail(reason="known: about 1 kick in 1000 is late then lost on the direct series "
                   "(kernel_patches/README.md, kick-race-direct); the assertion stays", strict=False)
def test_kick_race_on_the_direct_series_loses_no_kick(tmp_path):
    """vCPU 1's IPIs to vCPU 0 (direct): relayed when vCPU 0 is in the guest, v2's NMI kick when
    not; a trapped EOI must end the highest vector in service, direct or virtual, or a direct
    vector stays in service and its next kick is late, then lost."""
    proc, result = run(tmp_path, "kick-race-direct")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    op = next(o for o in result["measurement"]["ops"] if o["op"] == "ipi-race")
    assert op["reported"]["late"] == 0 and op["reported"]["irqs"] == op["count"]
    assert result["measurement"]["kick_trace"]["relays"] > op["count"] // 2
    assert result["verdict"] == "PASS"
