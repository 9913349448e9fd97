"""The device parts of the lab that are pure logic: specs across the agent channel, L0's
needs, probe frames, /proc/interrupts, samples -> latency, teardown that always runs."""
import socket

import pytest

from hil.lab.agent.protocol import L2Request
from hil.lab.devices import Attached, VfioPci, VirtioNet, device_from_json
from hil.lab.devices.base import proc_interrupts
from hil.lab.results import op_latency, samples_by_op
from hil.lab.errors import LabError
from hil.lab.stimuli import FrameCounter, FrameSender, spec_from_json
from hil.lab.stimuli.net_frames import parse_frame, probe_frame
from hil.measurement import latency_stats, percentile


def test_device_specs_round_trip_through_the_request():
    req = L2Request(argv=["qemu"], serial_log="/s", done_pattern=None, window=None,
                    devices=[VfioPci("edu"), VirtioNet(vhost=True)],
                    stimuli=[FrameSender("hiltap0", "begin", 5, 0.001), FrameCounter("hiltap0")])
    back = L2Request.from_json(req.to_json())
    assert back.devices == req.devices and back.stimuli == req.stimuli
    with pytest.raises(ValueError, match="unknown device kind 'nic'"):
        device_from_json({"kind": "nic"})
    assert spec_from_json(FrameCounter("t").to_json()) == FrameCounter("t")


def test_l0_needs_of_each_kind():
    edu = VfioPci("edu")
    assert edu.l0_machine_options() == ["kernel-irqchip=split"]
    assert edu.l0_argv() == ["-device", "intel-iommu,intremap=on,eim=on,caching-mode=on", "-device", "edu"]
    assert edu.l1_append() == ["intel_iommu=on"] and edu.module_group() == "vfio"
    net = VirtioNet(vhost=False)
    assert net.l0_argv() == [] and net.l1_append() == [] and net.module_group() == "net"
    assert net.l2_argv() == ["-netdev", "tap,id=n0,ifname=hiltap0,script=no,downscript=no,vhost=off",
                             "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile="]
    assert "vhost=on" in VirtioNet(vhost=True).l2_argv()[1]


def test_probe_frame_layout():
    f = probe_frame(7, 0x1122334455667788)
    assert len(f) == 60 and f[:6] == b"\xff" * 6 and f[12:14] == b"\x88\xb5" and f[14:18] == b"HILP"
    assert f[18:22] == (7).to_bytes(4, "little") and f[22:30] == (0x1122334455667788).to_bytes(8, "little")
    assert parse_frame(f) == (7, 0x1122334455667788)
    assert parse_frame(f[:12] + b"\x08\x00" + f[14:]) is None and parse_frame(b"short") is None


PROC_INTERRUPTS = """           CPU0       CPU1
  0:         35          0   IO-APIC   2-edge      timer
 24:          0         12  DMAR-MSI   0-edge      dmar0
 25:          3         40  IR-PCI-MSI 32768-edge      vfio-msi[0](0000:00:03.0)
LOC:       1000       2000   Local timer interrupts
"""


def test_proc_interrupts_picks_lines_by_name_per_cpu():
    assert proc_interrupts("vfio", PROC_INTERRUPTS) == {
        "25 IR-PCI-MSI 32768-edge vfio-msi[0](0000:00:03.0)": {"0": 3, "1": 40}}
    assert proc_interrupts("nothing", PROC_INTERRUPTS) == {}


def test_samples_lines_become_values_in_order_and_a_gap_is_an_error():
    ev = [{"event": "samples", "name": "dev-msi", "kind": "lat", "first": 0, "v": (1, 2)},
          {"event": "samples", "name": "dev-msi", "kind": "lat", "first": 2, "v": (3,)},
          {"event": "op", "name": "dev-msi"}]
    assert samples_by_op(ev) == {"dev-msi": {"lat": [1, 2, 3]}}
    with pytest.raises(LabError, match="lost serial line"):
        samples_by_op(ev[:1] + [dict(ev[1], first=5)])


def test_latency_in_ns_through_tsc_khz():
    # 2 GHz TSC: 2000 cycles = 1000 ns
    lat = op_latency({"lat": [2000, 4000, 2000, 8000]}, 2_000_000)["lat"]
    assert (lat.n, lat.min, lat.p50, lat.max) == (4, 1000, 1000, 4000)
    assert sum(b["count"] for b in lat.histogram) == 4
    assert all(b["lo_ns"] <= 1000 < b["hi_ns"] for b in lat.histogram if b["count"] == 2)
    rx = op_latency({"isr": [100, 300, 700], "sender": [0, 5000, 9000]}, 1_000_000)
    assert [rx["isr_interval"].min, rx["isr_interval"].max] == [200, 400]
    assert rx["sender_interval"].p50 == 4000
    assert op_latency({"lat": [1]}, None) == {}


def test_percentiles_are_measured_values():
    v = [float(x) for x in range(1, 101)]
    assert (percentile(v, 50), percentile(v, 99), percentile(v, 100)) == (50, 99, 100)
    assert latency_stats([]) is None
    s = latency_stats([5.0])
    assert (s.p50, s.p99, s.histogram) == (5.0, 5.0, [{"lo_ns": 4.0, "hi_ns": 8.0, "count": 1}])


def test_teardown_runs_every_step_in_reverse_and_reports_failures():
    done = []

    def boom():
        raise OSError("busy")
    att = Attached([], undo=[lambda: done.append("tap"), boom, lambda: done.append("bridge")])
    assert att.teardown() == ["OSError: busy"]
    assert done == ["bridge", "tap"] and att.undo == []


def test_frame_counter_counts_probe_frames_on_a_real_socket_pair():
    # the counter's parsing on real bytes through a socket (not a tap: no root needed)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        for i in range(3):
            a.send(probe_frame(i, 1000 + i))
        got = [parse_frame(b.recv(100)) for _ in range(3)]
    assert got == [(0, 1000), (1, 1001), (2, 1002)]


def test_host_interrupt_observer_waits_for_a_whole_begin_line():
    from hil.lab.stimuli.host_interrupts import BEGIN
    assert BEGIN.findall("hil-probe: event=begin name=dev-") == []      # the guest is still writing it
    assert BEGIN.findall("hil-probe: event=begin name=dev-msi\n") == ["dev-msi"]


def test_a_missing_capability_in_l1_travels_as_such_and_becomes_a_skip():
    from hil.lab.agent.service import Agent
    from hil.lab.errors import CapabilityMissing
    from hil.lab.l1 import AgentChannel

    agent = object.__new__(Agent)          # no /run/hil on the test host

    def no_tap(args):
        raise CapabilityMissing("L1 has no /dev/net/tun")
    agent.handlers = {"run_l2": no_tap}
    reply = agent.handle({"id": 7, "cmd": "run_l2", "args": {}})
    assert reply == {"id": 7, "ok": False, "error": "L1 has no /dev/net/tun", "kind": "capability"}

    class Sock:
        def settimeout(self, t): pass
        def sendall(self, data): pass
    chan = object.__new__(AgentChannel)
    chan.sock, chan.next_id = Sock(), 7
    chan.read_message = lambda timeout: reply
    with pytest.raises(CapabilityMissing, match="L1: L1 has no /dev/net/tun"):
        chan.request("run_l2", {}, 1.0)
    reply["kind"] = "lab"
    chan.next_id = 7
    with pytest.raises(LabError) as e:
        chan.request("run_l2", {}, 1.0)
    assert not isinstance(e.value, CapabilityMissing)
