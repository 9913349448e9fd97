"""Parsing tracefs hist output and building trigger commands (pure logic)."""
from hil.lab.agent.tracing import HistTrigger, exits_window, parse_hist

SAMPLE = """# event histogram
#
# trigger info: hist:keys=exit_reason,guest_rip:vals=hitcount:sort=hitcount:size=2048 if guest_rip >= 0x400000 && guest_rip < 0x401000 [active]
#

{ exit_reason:        114, guest_rip:    4194560 } hitcount:         16
{ exit_reason:        123, guest_rip:    4194820 } hitcount:          8

Totals:
    Hits: 24
    Entries: 2
    Dropped: 0
"""


def test_parse_hist_entries_and_totals():
    r = parse_hist(SAMPLE)
    assert r.entries == [{"exit_reason": 114, "guest_rip": 4194560, "hitcount": 16},
                         {"exit_reason": 123, "guest_rip": 4194820, "hitcount": 8}]
    assert (r.hits, r.dropped) == (24, 0)


def test_window_trigger_command_and_match():
    trig = exits_window(0x400000, 0x401000)
    assert trig.command() == ("hist:keys=exit_reason,guest_rip:size=2048 "
                              "if guest_rip >= 0x400000 && guest_rip < 0x401000")
    assert trig.command(":clear").startswith("hist:keys=exit_reason,guest_rip:size=2048:clear if ")
    info = SAMPLE.splitlines()[2].split("trigger info: ")[1]
    assert trig.matches_info(info)
    assert not HistTrigger("kvm/kvm_exit", ("exit_reason",)).matches_info(info)
    assert not exits_window(0x500000, 0x501000).matches_info(info)
