"""hil makes QEMU's vCPU thread issue an ioctl QEMU never would (python-ptrace, in L1):
here KVM_NMI, whose effect is visible in KVM's counters and in the guest."""
import pytest

from hil.lab.kvm.inject import KVM_NMI
from hil.lab.agent.protocol import VcpuIoctl
from hil.lab.request import build_request

pytestmark = pytest.mark.lab


def test_injected_kvm_nmi_reaches_the_guest(hil_lab):
    sc = hil_lab.load("probe-counts-small", ("workload.ops=[{op: cpuid, count: 2}]",))
    session, prep = hil_lab.session(sc)
    request, payload = build_request(sc, prep.probe)
    session.put_file("/run/hil/payload/kernel", payload.kernel)
    request.after_done = [VcpuIoctl(0, KVM_NMI)]
    request.settle = 1.0
    raw = session.request("run_l2", request.to_json(), timeout=300)
    assert raw["injected"] == [{"vcpu": 0, "request": KVM_NMI, "arg": 0, "result": 0}]
    vcpu = next(v for k, v in raw["stats"].items() if k != "vm")
    assert vcpu["nmi_injections"] == 1            # KVM saw exactly the one ioctl
    assert "msg=exception-2-" in raw["serial"]     # the probe took vector 2 (NMI)
    assert raw["ended_by"] == "done"               # QEMU carried on after the injection
