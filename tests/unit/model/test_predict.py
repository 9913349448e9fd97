"""predict's bookkeeping: names by era, where each exit is handled, delivery, errors."""
import pytest

from hil.model import Bound, ModelError, Operation, predict
from hil.model.types import Prediction


def test_counters_use_the_era_s_names():
    op = [Operation.of("timer", 2, armed_with="interrupts-off")]
    old = predict(op, "stock-2012", "vmx").counters
    assert old["irq_window"] == Bound(0, 2) and "irq_window_exits" not in old
    new = predict(op, "stock-vmx", "vmx").counters
    assert new["irq_window_exits"] == Bound(0, 2) and "irq_window" not in new
    assert predict(op, "stock-2012", "vmx").exits["PENDING_INTERRUPT"] == Bound(0, 2)


def test_counters_from_different_events_add_up():
    ops = [Operation.of("interrupt-in", 2, guest_state="running"), Operation.of("msi-assigned", 3)]
    pred = predict(ops, "stock-svm", "svm")
    assert pred.counters["irq_injections"] == Bound.exactly(5) and pred.guest_interrupts == Bound.exactly(5)
    assert pred.profile == "stock-svm" and pred.arch == "svm"


def test_where_each_exit_is_handled():
    stock = predict([Operation("cpuid", 1), Operation("kick", 1)], "stock-svm", "svm").handled_on
    assert stock == {"cpuid": "vcpu-cpu", "interrupt": "host"}
    slave = predict([Operation("cpuid", 1), Operation("pio-user", 1), Operation("kick", 1)], "slave-v2", "vmx")
    assert slave.handled_on == {"CPUID": "dedicated", "IO_INSTRUCTION": "online", "EXCEPTION_NMI": "dedicated"}


def test_an_undelivered_event_that_never_happens_leaves_delivery_alone():
    call = {"kind": "call-function"}
    assert predict([Operation("host-ipi", 0, call)], "slave-v2", "vmx").delivered is True
    assert predict([Operation("host-ipi", 1, call)], "slave-v2", "vmx").delivered is False
    assert predict([Operation("host-ipi", 1, call), Operation("cpuid", 4)], "slave-v2", "vmx").delivered is False


def test_unknown_names_are_named_with_the_valid_ones():
    with pytest.raises(ModelError, match=r"^unknown profile 'nope'; valid: dedicated-hlt, dedicated-v1, "):
        predict([], "nope", "svm")
    with pytest.raises(ModelError, match=r"^unknown APIC mode 'x1apic'; valid: x2apic, xapic$"):
        predict([], "stock-svm", "svm", apic="x1apic")
    with pytest.raises(ModelError, match=r"^profile stock-2012 does not exist on 'arm'; its architectures: vmx, svm$"):
        predict([], "stock-2012", "arm")
    with pytest.raises(ModelError, match=r"^unknown event 'cpuidd'; valid: cpuid, eoi, "):
        predict([Operation("cpuidd", 1)], "stock-svm", "svm")
    with pytest.raises(ModelError, match=r"^unknown parameter of event kick 'state'; valid: guest_state$"):
        predict([Operation("kick", 1, {"state": "x"})], "stock-svm", "svm")


def test_bound_scaling_refuses_a_negative_factor_by_name():
    with pytest.raises(ModelError, match=r"a Bound scales by a count \(an integer >= 0\), got -3"):
        Bound(1, 2) * -3
    with pytest.raises(ModelError, match=r"Bound\(2, 1\): low > high"):
        Bound(2, 1)
    with pytest.raises(ModelError, match=r"bounds are integers >= 0"):
        Bound(-1, None)


def test_json_of_a_prediction():
    pred = predict([Operation.of("timer", 2, armed_with="interrupts-off")], "stock-svm", "svm")
    j = pred.to_json()
    assert j["exits"]["msr"] == 2 and j["exits"]["vintr"] == {"low": 0, "high": 2}
    assert j["exits"]["interrupt"] == {"low": 0, "high": None} and j["misdelivered"] == 0
    assert j["profile"] == "stock-svm" and j["arch"] == "svm" and j["delivered"] is True
    assert j["guest_interrupts"] == 2 and j["bounces"] == 0 and "guest-if" in j["assumptions"]
    assert j["handled_on"] == {"msr": "vcpu-cpu", "vintr": "vcpu-cpu", "interrupt": "host"}
    assert list(j["exits"]) == sorted(j["exits"]) and list(j["counters"]) == sorted(j["counters"])
    assert Prediction("p", "svm").to_json()["exits"] == {}


@pytest.mark.parametrize("profile,arch,event,params,where", [
    ("stock-svm", "svm", "mmio-user", {}, {"npf": "host"}),
    ("slave-v2", "vmx", "mmio-user", {}, {"EPT_MISCONFIG": "online"}),
    ("slave-v2", "vmx", "page-fault", {}, {"EPT_VIOLATION": "online"}),
    ("stock-2012", "vmx", "page-fault", {}, {"EPT_VIOLATION": "vcpu-cpu"}),
    ("stock-svm", "svm", "signal", {"guest_state": "running"}, {"interrupt": "host"}),
    ("slave-v2", "vmx", "host-irq", {"direct": "off"}, {"EXTERNAL_INTERRUPT": "online"}),
    ("slave-v2", "vmx", "msi-assigned", {"direct": "off"}, {"EXTERNAL_INTERRUPT": "online"}),
    ("slave-v2", "vmx", "timer", {"direct": "off"}, {"EXTERNAL_INTERRUPT": "online", "MSR_WRITE": "dedicated"}),
    ("stock-svm", "svm", "msi-assigned", {}, {"interrupt": "host"}),
    ("stock-vmx", "vmx", "timer", {"guest_state": "running"}, {"PREEMPTION_TIMER": "vcpu-cpu", "MSR_WRITE": "vcpu-cpu",
                                                                 "EXTERNAL_INTERRUPT": "host"}),
])
def test_where_each_event_s_exits_are_handled(profile, arch, event, params, where):
    pred = predict([Operation(event, 1, params)], profile, arch)
    assert {r: pred.handled_on.get(r) for r in where} == where
    assert {r: w for r, w in pred.handled_on.items() if r not in where} in ({}, {"interrupt": "host"},
                                                                            {"EXTERNAL_INTERRUPT": "host"})


def test_the_signal_assumption_only_for_the_port():
    run = {"guest_state": "running"}
    assert "signal-kick-process" in predict([Operation("signal", 1, run)], "dedicated-v1", "svm").assumptions
    assert "signal-kick-process" not in predict([Operation("signal", 1, run)], "stock-svm", "svm").assumptions


def test_bad_operations_say_what_is_wrong():
    with pytest.raises(ModelError, match=r"^an operation's event is a name, got 3$"):
        Operation(3, 1)
    with pytest.raises(ModelError, match=r"^kick: parameters are name=value pairs of strings, got 5$"):
        Operation("kick", 1, 5)
    from hil.model import names
    with pytest.raises(ModelError, match=r"^unknown architecture 'arm'; valid: svm, vmx$"):
        names.reason("arm", "CPUID")
    with pytest.raises(ModelError, match=r"^abstract exit reason 'HV_TIMER' does not exist on svm$"):
        names.reason("svm", "HV_TIMER")


def test_effects_accumulate_per_reason_and_counter():
    from hil.model.semantics import Effect
    e = Effect().exit("MSR_WRITE").exit("MSR_WRITE", Bound(0, 1)).count("pf_fixed").count("pf_fixed")
    assert e.exits == {"MSR_WRITE": Bound(1, 2)} and e.counters == {"pf_fixed": Bound.exactly(2)}
    assert e.assume("a", "b").assume("a").assumptions == ("a", "b")


def test_compare_and_agrees_against_measured_counts():
    from hil.model import agrees, compare
    pred = predict([Operation("cpuid", 3)], "stock-svm", "svm")
    rows = compare(pred, {"cpuid": 3, "interrupt": 7, "hlt": 1})
    assert [(r.reason, r.predicted, r.measured, r.ok) for r in rows] == [
        ("cpuid", Bound.exactly(3), 3, True), ("hlt", Bound(0, 0), 1, False), ("interrupt", Bound(0, None), 7, True)]
    assert not agrees(pred, {"cpuid": 3, "hlt": 1}) and agrees(pred, {"cpuid": 3, "interrupt": 2})
    assert not agrees(pred, {"cpuid": 2}) and agrees(pred, {"cpuid": 3}) and not agrees(pred, {})
    assert [(r.reason, r.measured, r.ok) for r in compare(pred, {})] == [("cpuid", 0, False), ("interrupt", 0, True)]


def test_abstract_reasons_sharing_a_name_add_up():
    ops = [Operation.of("msr", 2, access="read"), Operation.of("msr", 3, access="write")]
    assert predict(ops, "stock-svm", "svm").exits["msr"] == Bound.exactly(5)
    assert predict(ops, "stock-vmx", "vmx").exits["MSR_READ"] == Bound.exactly(2)


def test_bound_membership():
    assert Bound.at_least(2) == Bound(2, None) and Bound.at_least(2).contains(10**9) and not Bound.at_least(2).contains(1)
    assert [Bound(1, 2).contains(n) for n in (0, 1, 2, 3)] == [False, True, True, False]
    assert Bound(1, 1).exact and not Bound(1, 2).exact and not Bound.at_least(1).exact
