"""Parsing tracefs hist output and building trigger commands (pure logic)."""
import pytest

from hil.lab.kvm.tracing import HistTrigger, Tracefs, exits_window, parse_hist

SAMPLE = """# event histogram
#
# trigger info: hist:keys=common_cpu,exit_reason,guest_rip:vals=hitcount:sort=hitcount:size=2048 if guest_rip >= 0x400000 && guest_rip < 0x401000 [active]
#

{ common_cpu:          1, exit_reason:        114, guest_rip:    4194560 } hitcount:         16
{ common_cpu:          1, exit_reason:        123, guest_rip:    4194820 } hitcount:          8

Totals:
    Hits: 24
    Entries: 2
    Dropped: 0
"""


def test_parse_hist_entries_and_totals():
    r = parse_hist(SAMPLE)
    assert r.entries == [{"common_cpu": 1, "exit_reason": 114, "guest_rip": 4194560, "hitcount": 16},
                         {"common_cpu": 1, "exit_reason": 123, "guest_rip": 4194820, "hitcount": 8}]
    assert (r.hits, r.dropped) == (24, 0)


def test_window_trigger_command_and_match():
    trig = exits_window(0x400000, 0x401000)
    assert trig.command() == ("hist:keys=common_cpu,exit_reason,guest_rip:size=2048 "
                              "if guest_rip >= 0x400000 && guest_rip < 0x401000")
    assert trig.command(":clear").startswith("hist:keys=common_cpu,exit_reason,guest_rip:size=2048:clear if ")
    info = SAMPLE.splitlines()[2].split("trigger info: ")[1]
    assert trig.matches_info(info)
    assert not HistTrigger("kvm/kvm_exit", ("exit_reason",)).matches_info(info)
    assert not trig.matches_info(info.replace("common_cpu,", ""))     # an older agent's trigger
    assert not exits_window(0x500000, 0x501000).matches_info(info)


def test_summed_fields_and_string_keys():
    from hil.lab.kvm.tracing import DEDICATED_NMIS
    # three keys: the kernel's most, no room for the CPU
    assert DEDICATED_NMIS.command() == "hist:keys=vcpu_id,where,prevent_run:vals=hitcount,kicks,self_nmis:size=2048"
    section = ("{ vcpu_id:          0, where:          1, prevent_run:          1 } hitcount:          3"
               "  kicks:          3  self_nmis:          0\n"
               "{ target_cpu:          1, comm: kworker/1:1 } hitcount:          2\n")
    assert parse_hist(section).entries == [
        {"vcpu_id": 0, "where": 1, "prevent_run": 1, "hitcount": 3, "kicks": 3, "self_nmis": 0},
        {"target_cpu": 1, "comm": "kworker/1:1", "hitcount": 2}]
    info = "hist:keys=vcpu_id,where,prevent_run:vals=hitcount,kicks,self_nmis:sort=hitcount:size=2048 [active]"
    assert DEDICATED_NMIS.matches_info(info)


def test_a_map_keyed_by_cpu_too_is_read_summed_over_cpus(tmp_path):
    """Both L2 vCPUs stopped at once: each CPU inserted its own key, the read adds them up."""
    trig = HistTrigger("kvm/kvm_userspace_exit", ("reason",))
    assert trig.command() == "hist:keys=common_cpu,reason:size=2048"
    hist = tmp_path / "events/kvm/kvm_userspace_exit/hist"
    hist.parent.mkdir(parents=True)
    hist.write_text("# event histogram\n#\n# trigger info: hist:keys=common_cpu,reason:vals=hitcount:sort=hitcount"
                    ":size=2048 [active]\n#\n\n"
                    "{ common_cpu:          0, reason:         10 } hitcount:          1\n"
                    "{ common_cpu:          1, reason:          2 } hitcount:          5\n"
                    "{ common_cpu:          1, reason:         10 } hitcount:          1\n"
                    "\nTotals:\n    Hits: 7\n    Entries: 3\n    Dropped: 0\n")
    r = Tracefs(tmp_path).read(trig)
    assert sorted(r.entries, key=lambda e: e["reason"]) == [{"reason": 2, "hitcount": 5}, {"reason": 10, "hitcount": 2}]
    assert (r.hits, r.dropped) == (7, 0)
    per_cpu = HistTrigger("irq_vectors/reschedule_entry", ("common_cpu",))     # asked per CPU: kept so
    assert per_cpu.command() == "hist:keys=common_cpu:size=2048"


def _result(**kw):
    from hil.lab.agent.protocol import L2Result
    return L2Result(exits_all=[], exits_window=[], pio=[], userspace_exits=[], stats={}, serial="", exitcode=None,
                    ended_by="done", **kw)


def test_kick_trace_folds_the_series_hists_for_vcpu_0():
    from hil.lab.results import kick_trace
    from hil.measurement import KickFinding, NmiLanding
    result = _result(stimuli={"io-thread-msi": {"msi_results": [1, 1]},
                              "host-interrupts": {"per_op": {"kicks": {"reschedule": {"1": 0}}},
                                                  "immediate_exits_per_op": {"kicks": {"0": 3}}}}, hists={
        "accepted_irqs": [{"apicid": 0, "vec": 0x50, "hitcount": 5}, {"apicid": 0, "vec": 0x60, "hitcount": 4},
                          {"apicid": 1, "vec": 0x50, "hitcount": 9}, {"apicid": 0, "vec": 0x40, "hitcount": 7}],
        "kicks": [{"vcpu_id": 0, "old_mode": 1, "nmi": 1, "hitcount": 6}, {"vcpu_id": 0, "old_mode": 2, "nmi": 0,
                   "hitcount": 2}, {"vcpu_id": 1, "old_mode": 1, "nmi": 1, "hitcount": 50}],
        "kick_nmis": [{"vcpu_id": 0, "where": 0, "prevent_run": 0, "hitcount": 5, "kicks": 4, "self_nmis": 1},
                      {"vcpu_id": 1, "where": 0, "prevent_run": 0, "hitcount": 2, "kicks": 2, "self_nmis": 0},
                      {"vcpu_id": 0, "where": 1, "prevent_run": 1, "hitcount": 1, "kicks": 1, "self_nmis": 0}],
        "kick_windows": [{"vcpu_id": 0, "prevented": 1, "pending": 1, "hitcount": 1},
                         {"vcpu_id": 0, "prevented": 1, "pending": 0, "hitcount": 2}],
        "stock_kicks": [{"vcpu_id": 0, "old_mode": 0, "hitcount": 13}]})
    t = kick_trace(result)
    assert t.accepted == 9 and t.io_thread_msis == [1, 1] and t.series_traced
    assert t.found == [KickFinding("exiting", False, 2), KickFinding("in-guest", True, 6)]
    assert t.found_count("exiting", False) == 2
    assert NmiLanding("guest", 5, 4, 1, 0) in t.landed
    assert next(l for l in t.landed if l.where == "entry").prevent_run == 1
    assert t.guest_nmis_all_vcpus == 7            # kvm_exit's hist cannot tell vCPUs apart
    assert (t.window, t.window_pending) == (3, 1) and t.self_nmis == 1
    assert t.stock_kicks == {"outside": 13} and t.host_interrupts("kicks", 1) == {"reschedule": 0}
    assert t.immediate_exits_per_op == {"kicks": {"0": 3}}


def test_kick_trace_without_the_series_says_so():
    from hil.lab.results import kick_trace
    t = kick_trace(_result(hists={"accepted_irqs": [{"apicid": 0, "vec": 0x50, "hitcount": 2}]}))
    assert t.accepted == 2 and not t.series_traced and t.found == [] and t.host_interrupts("kicks", 1) is None


def test_the_host_interrupt_observer_looks_before_the_msis_it_must_count():
    """Drivers see the serial output in list order: the observer's begin snapshot must come
    before the I/O-thread MSIs that the same begin line sets off."""
    from hil.lab.request import stimuli
    from hil.lab.stimuli import HostInterruptsPerOp, IoThreadMsi
    from tests.unit.fakes import scenario
    kinds = [type(s) for s in stimuli(scenario("kicks-io-thread"))]
    assert kinds == [HostInterruptsPerOp, IoThreadMsi]


def test_a_trigger_left_by_an_earlier_agent_is_reused(tmp_path, monkeypatch):
    """The kernel answers EEXIST to a hist trigger that is already there (a second
    `hil run --host` on one box): that is the trigger wanted, not an error."""
    from hil.lab.kvm import tracing
    t = tracing.Tracefs(tmp_path)
    writes = []

    def exists(event, command):
        writes.append(command)
        raise FileExistsError(17, "File exists")
    monkeypatch.setattr(t, "_write", exists)
    t.ensure(tracing.EXITS_ALL)
    t.ensure(tracing.EXITS_ALL)
    assert writes == [tracing.EXITS_ALL.command()] and t.registered == [tracing.EXITS_ALL]

    def denied(event, command):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(t, "_write", denied)
    with pytest.raises(PermissionError):
        t.ensure(tracing.PIO_PORTS)


def test_no_trigger_asks_the_kernel_for_more_keys_than_a_map_has():
    """tracing_map takes 3 keys at most: a 4th makes the trigger write fail with EINVAL in L1."""
    from hil.lab.devices import irqfd
    from hil.lab.kvm import tracing
    from hil.lab.stimuli import host_interrupts
    triggers = [v for m in (tracing, irqfd) for v in vars(m).values() if isinstance(v, HistTrigger)]
    triggers += [*host_interrupts.TRIGGERS.values(), exits_window(0x1000, 0x2000), tracing.IMMEDIATE_EXITS]
    assert len(triggers) > 15
    assert all(len(t.map_keys) <= tracing.KEYS_MAX for t in triggers), [t.command() for t in triggers]
