"""hil model on the command line, and the cost model's YAML host profiles."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hil.model import Bound, ModelError, Operation
from hil.model.cost import HostCosts, event_latency, latency_distribution, percentile

ROOT = Path(__file__).resolve().parents[3]


def model(*args):
    return subprocess.run([sys.executable, "-m", "hil.cli", "model", *args], capture_output=True, text=True)


def test_json_answer_has_the_documented_keys():
    proc = model("--profile", "stock-svm", "--arch", "svm", "--event", "cpuid", "--count", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"exits", "counters", "guest_interrupts", "bounces", "delivered"} <= set(out)
    assert out["exits"]["cpuid"] == 12 and out["counters"]["exits"]["low"] == 12


def test_list_and_unknown_names():
    listing = model("--list").stdout
    assert "slave-v2" in listing and "msi-assigned" in listing
    bad = model("--profile", "slave-v3", "--arch", "vmx", "--event", "cpuid")
    assert bad.returncode == 2 and "unknown profile 'slave-v3'; valid:" in bad.stderr and "slave-v2" in bad.stderr
    bad = model("--profile", "slave-v2", "--arch", "vmx", "--event", "cpuidd")
    assert bad.returncode == 2 and "unknown event 'cpuidd'" in bad.stderr
    bad = model("--profile", "slave-v2", "--arch", "vmx", "--event", "kick", "--param", "guest_state=asleep")
    assert bad.returncode == 2 and "running, halted, outside" in bad.stderr


@pytest.mark.parametrize("args,message", [
    (["--profile", "slave-v2", "--arch", "svm", "--event", "kick"], "its architectures: vmx"),
    (["--profile", "slave-v2", "--event", "kick"], "--profile, --arch and --event are required"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--param", "mode=oneshot",
      "--param", "mode=tsc-deadline"], "--param mode given twice"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--apic", "xapic", "--param", "apic=x2apic"],
     "--apic xapic and --param apic=x2apic disagree"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "cpuid", "--param", "apic=xapic"],
     "event cpuid takes no parameters"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "cpuid", "--param", "guest_state"], "--param takes K=V"),
    (["--list", "--profile", "nope"], "--list takes no other option"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "cpuid", "--count", "-5"], "must be an integer >= 0"),
])
def test_bad_questions_exit_2_with_a_message(args, message):
    proc = model(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_apic_given_either_way_is_the_same_question():
    a = model("--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--apic", "xapic", "--json")
    b = model("--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--param", "apic=xapic", "--json")
    assert a.returncode == b.returncode == 0 and json.loads(a.stdout) == json.loads(b.stdout)
    assert "npf" in json.loads(a.stdout)["exits"]


@pytest.mark.parametrize("bad", [2.5, "3", None, True, -1])
def test_an_operation_count_must_be_a_non_negative_integer(bad):
    with pytest.raises(ModelError, match="count of cpuid"):
        Operation("cpuid", bad)


def test_operation_parameters_are_checked_and_normalised():
    assert Operation("kick", 1, {"guest_state": "halted"}) == Operation.of("kick", 1, guest_state="halted")
    with pytest.raises(ModelError, match="pairs of strings"):
        Operation("kick", 1, {"guest_state": ["running"]})
    with pytest.raises(ModelError, match="given twice"):
        Operation("kick", 1, (("guest_state", "running"), ("guest_state", "halted")))


@pytest.mark.parametrize("low,high", [(2, 1), (-1, 3), (0, -1), (1.5, 2), (True, 1)])
def test_a_bound_with_low_above_high_or_negative_cannot_be_built(low, high):
    with pytest.raises(ModelError):
        Bound(low, high)
    with pytest.raises(ValueError):          # ModelError is a ValueError
        Bound(low, high)


def test_bound_arithmetic_keeps_the_invariant():
    assert Bound(1, 2) + Bound(0, None) == Bound(1, None) and Bound(1, 2) * 3 == Bound(3, 6) == 3 * Bound(1, 2)
    with pytest.raises(ModelError):
        Bound(1, 2) * -3


def test_default_host_profile_loads_and_ranks_profiles():
    costs = HostCosts.from_mapping(yaml.safe_load((ROOT / "qemu_configs/host_profiles/default.yaml").read_text()))
    msi = Operation.of("msi-assigned", 1)
    assert event_latency(msi, "slave-v2", costs) < event_latency(msi, "stock-2012", costs, arch="vmx")
    # slave-v2 with direct mode off: the exit, the bounce and the injection cost more than direct
    off = Operation.of("msi-assigned", 1, direct="off")
    assert event_latency(off, "slave-v2", costs) > event_latency(msi, "slave-v2", costs) + costs.bounce
    with pytest.raises(ModelError, match="its architectures: vmx"):
        event_latency(msi, "slave-v2", costs, arch="svm")
    hist = latency_distribution([Operation.of("msi-assigned", 90),
                                 Operation.of("pio-user", 10)], "slave-v2", costs)
    assert sum(hist.values()) == 100 and percentile(hist, 0.5) < percentile(hist, 0.99)


def test_bad_host_profile_names_the_key():
    with pytest.raises(ModelError, match=r"cycles.exit_entri: unknown cost"):
        HostCosts.from_mapping({"cycles": {"exit_entri": 1}}, "x.yaml")


def test_cli_in_process_prints_the_answer(capsys):
    """The same CLI, called in-process (so a mutation test sees what it runs)."""
    from hil.model.cli import main
    assert main(["--profile", "slave-v2", "--arch", "vmx", "--event", "timer", "--param", "direct=off",
                 "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 x timer under slave-v2 (vmx, x2apic):")
    assert "exit EXTERNAL_INTERRUPT" in out and "(handled on online)" in out and "bounces 3" in out
    assert "counter irq_injections      3" in out and "assumes: v2-lvtt-vector" in out
    assert main(["--profile", "slave-v1", "--arch", "vmx", "--event", "host-irq", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["misdelivered"] == 1 and got["delivered"] is False and got["exits"] == {}
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "  slave-v2           [vmx] " in listing and "host-irq" in listing and "direct=on|off" in listing
    assert listing.startswith("profiles:\n  stock-2012         [vmx,svm] Linux 3.6")
    assert "\nevents:\n  cpuid          guest executes CPUID\n  hlt " in listing
    assert "[access=read|write msr=apic-base|tsc-deadline|" in listing and listing.endswith("guest_state=running|halted]\n")


@pytest.mark.parametrize("args,message", [
    (["--profile", "slave-v2", "--arch", "svm", "--event", "kick"], "its architectures: vmx"),
    (["--profile", "slave-v2", "--event", "kick"], "--profile, --arch and --event are required"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--param", "mode=oneshot",
      "--param", "mode=tsc-deadline"], "--param mode given twice (mode=oneshot, mode=tsc-deadline)"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--apic", "xapic", "--param", "apic=x2apic"],
     "--apic xapic and --param apic=x2apic disagree"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--param", "apic=x1apic"],
     "apic='x1apic' is not one of x2apic, xapic"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "cpuid", "--param", "guest_state"],
     "--param takes K=V, got 'guest_state'"),
    (["--list", "--event", "cpuid"], "--list takes no other option"),
])
def test_cli_in_process_refuses_bad_questions(args, message, capsys):
    from hil.model.cli import main
    assert main(args) == 2
    assert message in capsys.readouterr().err


# Costs as distinct powers of ten: each mechanism shows as its own digit of the latency.
DIGITS = HostCosts(exit_entry=3, ipi=10, nmi=100, injection=1000, bounce=10**4, userspace=10**5,
                   guest_handler=10**6, halt_wakeup=10**7)


@pytest.mark.parametrize("op,profile,kw,cycles", [
    (Operation.of("msi-assigned", 1, guest_state="running"), "stock-2012", {}, 3 * 1 + 10 + 1000 + 10**6),
    (Operation.of("msi-assigned", 1, guest_state="halted"), "stock-svm", {}, 1000 + 10**6 + 10**7),
    (Operation.of("pio-user", 1), "slave-v2", {}, 3 * 1 + 10**4 + 10**5),
    (Operation.of("kick", 1), "slave-v2", {}, 3 * 1 + 100),
    (Operation.of("kick", 1), "stock-svm", {}, 3 * 1 + 10),
    (Operation.of("timer", 1, guest_state="running"), "stock-vmx", {}, 3 * 2 + 1000 + 10**6),   # hv timer: no IPI
    (Operation.of("timer", 1, guest_state="running"), "stock-svm", {}, 3 * 2 + 10 + 1000 + 10**6),
    (Operation.of("timer", 1), "slave-v2", {}, 10**6),
    (Operation.of("timer", 1), "slave-v2", {"apic": "xapic"}, 3 * 1 + 10**6),
    (Operation.of("timer", 1, guest_state="running"), "dedicated-v2", {"arch": "vmx"}, 3 * 2 + 1000 + 10**6),
    (Operation.of("ipi", 1), "stock-svm-avic", {}, 10**6),
])
def test_event_latency_adds_one_cost_per_mechanism(op, profile, kw, cycles):
    assert event_latency(op, profile, DIGITS, **kw) == cycles


def test_latency_distribution_and_percentiles():
    same = [Operation.of("kick", 3), Operation.of("nmi", 2)]      # under slave-v2 both are one NMI exit
    hist = latency_distribution([Operation.of("kick", 3), Operation.of("kick", 2, guest_state="halted")],
                                "slave-v2", DIGITS)
    assert hist == {103: 5}                                        # a halted slave is in guest mode: the same NMI
    hist = latency_distribution(same, "slave-v2", DIGITS)
    assert hist == {3 + 100: 5}
    h = {10: 1, 20: 1, 30: 2}
    assert [percentile(h, q) for q in (0.25, 0.5, 0.75, 1.0, 1.5)] == [10, 20, 30, 30, 30]
    assert percentile({}, 0.5) == 0


def test_host_costs_from_mapping():
    assert HostCosts.from_mapping({"exit_entry": 5}).exit_entry == 5           # a bare mapping, no 'cycles:'
    assert HostCosts.from_mapping({"cycles": {"ipi": 0}}).ipi == 0            # zero is a cost
    assert HostCosts.from_mapping(None) == HostCosts()
    with pytest.raises(ModelError, match=r"x.yaml: cycles.ipi: expected a non-negative integer, got -1"):
        HostCosts.from_mapping({"cycles": {"ipi": -1}}, "x.yaml")
    with pytest.raises(ModelError, match=r"cycles.ipi: expected a non-negative integer, got '3'"):
        HostCosts.from_mapping({"cycles": {"ipi": "3"}})
    with pytest.raises(ModelError, match=r"^host profile: cycles.x: unknown cost; valid: bounce, exit_entry, guest_handler, halt_wakeup, injection, ipi"):
        HostCosts.from_mapping({"cycles": {"x": 1}})


def test_predict_event_takes_apic_as_a_keyword_for_any_event():
    from hil.model import predict_event
    assert predict_event("stock-svm", "svm", "cpuid", 2, apic="xapic").exits["cpuid"] == Bound.exactly(2)
    assert "npf" in predict_event("stock-svm", "svm", "timer", 1, apic="xapic").exits


def test_cli_help_names_every_option(capsys):
    from hil.model.cli import main
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("usage: hil model", "hil model: ask the reference model one question from the command line",
                 "--arch {svm,vmx} required: the architecture asked about",
                 "--apic {x2apic,xapic} APIC mode (default x2apic); same as --param apic=",
                 "--param K=V event parameter", "--list list profiles and events (takes no other option)"):
        assert text in out, text


@pytest.mark.parametrize("args,line", [
    (["--list", "--arch", "svm"], "hil model: --list takes no other option"),
    (["--list", "--param", "a=b"], "hil model: --list takes no other option"),
    (["--arch", "svm", "--event", "cpuid"], "hil model: --profile, --arch and --event are required (see --list)"),
    (["--arch", "svm", "--profile", "stock-svm"], "hil model: --profile, --arch and --event are required (see --list)"),
    (["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--param", "mode=a=b"],
     "hil model: event timer: mode='a=b' is not one of oneshot, tsc-deadline"),
])
def test_cli_error_lines(args, line, capsys):
    from hil.model.cli import main
    assert main(args) == 2
    assert capsys.readouterr().err == line + "\n"


def test_cli_apic_option_reaches_the_model_and_json_is_indented(capsys):
    from hil.model.cli import main
    assert main(["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--apic", "xapic", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n  "profile": "stock-svm",\n') and "npf" in json.loads(out)["exits"]
    assert main(["--profile", "stock-svm", "--arch", "svm", "--event", "timer", "--apic", "xapic"]) == 0
    assert capsys.readouterr().out.startswith("1 x timer under stock-svm (svm, xapic):\n  exit interrupt ")
