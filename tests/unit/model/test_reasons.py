"""The exit-reason vocabularies: the names the kvm_exit tracepoint prints, and the model's
abstract reasons mapped onto them."""
import hashlib
import json

import pytest

from hil.model import ModelError, exit_reasons, extend, names, reason_name
from hil.model.reasons import SVM, VMX, VMX_2012

# The tables were checked against Linux 6.12's arch/x86/include/uapi/asm/vmx.h VMX_EXIT_REASONS
# (identical) and svm.h SVM_EXIT_REASONS (a subset; the exception exits from SVM_EXIT_EXCP_BASE);
# a change to a name must be deliberate: re-check it there, then update the digest.
DIGESTS = {"svm": "df03742dcb91bd8814009b1b9e306d5ff13f58bf4829f41849c79d2178d1d95c",
           "vmx": "36f77d53b7a8799160ac4a1fa67ea913daeef14ee26841006962070bcea62a79",
           "vmx-2012": "b3a807a7aa648e72832aa35e8ea61332245cdad2395610a486117ca4424ecec4"}


@pytest.mark.parametrize("arch,table", [("svm", SVM), ("vmx", VMX), ("vmx-2012", VMX_2012)])
def test_tables_are_the_reviewed_ones(arch, table):
    assert hashlib.sha256(json.dumps(sorted(table.items())).encode()).hexdigest() == DIGESTS[arch]
    assert exit_reasons(arch) is table


def test_the_lab_s_reasons_by_code():
    assert [reason_name("svm", c) for c in (0x60, 0x61, 0x64, 0x72, 0x78, 0x7b, 0x7c, 0x400, 0x401, 0x402)] == [
        "interrupt", "nmi", "vintr", "cpuid", "hlt", "io", "msr", "npf", "avic_incomplete_ipi",
        "avic_unaccelerated_access"]
    assert [reason_name("vmx", c) for c in (0, 1, 7, 10, 12, 30, 31, 32, 44, 48, 49, 52, 56)] == [
        "EXCEPTION_NMI", "EXTERNAL_INTERRUPT", "INTERRUPT_WINDOW", "CPUID", "HLT", "IO_INSTRUCTION", "MSR_READ",
        "MSR_WRITE", "APIC_ACCESS", "EPT_VIOLATION", "EPT_MISCONFIG", "PREEMPTION_TIMER", "APIC_WRITE"]
    assert reason_name("vmx-2012", 7) == "PENDING_INTERRUPT" and reason_name("svm", 0x1234) == "0x1234"
    assert reason_name("arm", 1) == "0x1"


def test_every_abstract_reason_is_a_tracepoint_name_of_its_arch():
    for arch in ("svm", "vmx"):
        for abstract, name in names._REASONS[arch].items():
            assert name in exit_reasons(arch).values(), (arch, abstract, name)
    assert names.reason("vmx", "IRQ_WINDOW", "2012") == "PENDING_INTERRUPT"
    assert names.reason("vmx", "IRQ_WINDOW") == "INTERRUPT_WINDOW" == names.reason("vmx", "IRQ_WINDOW", "modern")
    assert names.reason("svm", "IRQ_WINDOW", "2012") == "vintr"
    with pytest.raises(ModelError, match="does not exist on vmx"):
        names.reason("vmx", "AVIC_INCOMPLETE_IPI")
    with pytest.raises(ModelError, match="unknown architecture 'arm'"):
        names.reason("arm", "CPUID")
    assert names.counter("irq_window_exits", "2012") == "irq_window" and names.counter("irq_window_exits", "modern") \
        == "irq_window_exits" and names.counter("halt_exits", "2012") == "halt_exits"


def test_extend_adds_a_patched_kernel_s_reasons_and_refuses_an_unknown_arch():
    extend("svm", {0x9999: "hil_test_reason"})
    try:
        assert reason_name("svm", 0x9999) == "hil_test_reason"
    finally:
        del SVM[0x9999]
    with pytest.raises(ModelError, match="unknown architecture 'arm'; valid: svm, vmx, vmx-2012"):
        extend("arm", {1: "x"})
