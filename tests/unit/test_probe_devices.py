"""The probe's device ops under plain TCG QEMU (q35, no nesting): edu MSIs and DMA, virtio-net
receive and transmit through a UDP socket backend and through a tap, and the window layout."""
from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from hil.lab.assets.probe import build_probe, format_cmdline, parse_probe_line

QEMU = shutil.which("qemu-system-x86_64")
TOOLCHAIN = all(shutil.which(t) for t in ("make", "gcc", "objcopy", "objdump"))
pytestmark = [
    pytest.mark.skipif(not TOOLCHAIN, reason="make/gcc/objcopy/objdump not installed"),
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed"),
]

DEVICE_OPS = ("dev-msi", "dev-dma", "net-rx", "net-tx")
FRAME_TYPE = 0x88B5
NIC_MAC = bytes.fromhex("525400123456")


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return build_probe(tmp_path_factory.mktemp("probe"))


def qemu_argv(kernel: Path, cmdline: str, log: Path, devices: list[str], machine: str = "q35") -> list[str]:
    return [QEMU, "-M", machine, "-accel", "tcg", "-cpu", "max", "-m", "64", "-smp", "1", "-nodefaults",
            "-no-reboot", "-display", "none", "-serial", f"file:{log}",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", *devices, "-kernel", str(kernel), "-append", cmdline]


def parse_log(log: Path) -> list[dict]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [p for p in map(parse_probe_line, text.splitlines()) if p is not None]


def boot(kernel: Path, cmdline: str, log: Path, devices: list[str], timeout: float = 60,
         machine: str = "q35") -> tuple[int, list[dict]]:
    proc = subprocess.run(qemu_argv(kernel, cmdline, log, devices, machine), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, check=False)
    lines = parse_log(log)
    assert lines, f"no probe output; qemu said: {proc.stdout!r}"
    return proc.returncode, lines


def op_line(lines: list[dict], name: str) -> dict:
    return next(line for line in lines if line["event"] == "op" and line["name"] == name)


def samples(lines: list[dict], name: str, kind: str) -> list[int]:
    """The op's samples of one kind, checking the chunks are contiguous and at most 64 long."""
    values: list[int] = []
    for line in lines:
        if line["event"] == "samples" and line["name"] == name and line["kind"] == kind:
            assert line["first"] == len(values), line
            assert 0 < len(line["v"]) <= 64
            values.extend(line["v"])
    return values


def probe_frame(seq: int, stamp: int, src: bytes = bytes.fromhex("020000000001")) -> bytes:
    frame = b"\xff" * 6 + src + FRAME_TYPE.to_bytes(2, "big") + b"HILP" + struct.pack("<IQ", seq, stamp)
    return frame.ljust(60, b"\0")


def wait_for(log: Path, needle: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while needle not in (log.read_text(errors="replace") if log.exists() else ""):
        assert proc.poll() is None, f"qemu exited before {needle!r}: {parse_log(log)}"
        assert time.monotonic() < end, f"no {needle!r} in {timeout} s: {parse_log(log)}"
        time.sleep(0.01)


# ---------------------------------------------------------------- layout


def test_device_ops_stay_inside_their_window_range(probe):
    """The device loops are C: no call may leave the op's range, and no jump either, or their
    exits (and the interrupts taken while they spin) would be attributed to no op."""
    elf64 = probe.path.with_name("probe64.elf")
    start, end = probe.window
    dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                           f"--stop-address={end:#x}", str(elf64)],
                          stdout=subprocess.PIPE, text=True, check=True).stdout
    insn = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
    branches = 0
    for line in dump.splitlines():
        m = insn.match(line)
        if not m:
            continue
        rip, mnemonic, operands = int(m.group(1), 16), m.group(2), m.group(3)
        op = probe.op_at(rip)
        if op not in DEVICE_OPS:
            continue
        assert not mnemonic.startswith("call"), f"{op}: {line.strip()}"
        if mnemonic.startswith("j"):
            target = re.match(r"([0-9a-f]+)\b", operands)
            assert target, f"{op}: indirect jump {line.strip()}"
            assert probe.op_at(int(target.group(1), 16)) == op, f"{op} jumps out: {line.strip()}"
            branches += 1
    assert branches > 20  # the loops were really disassembled
    for op in DEVICE_OPS:
        for isr in ("dev_msi_isr", "dev_dma_isr", "net_rx_isr", "net_tx_isr"):
            if isr.startswith(op.replace("-", "_")):
                assert probe.op_at(probe.symbols[isr]) == op


def test_parse_samples_line():
    line = parse_probe_line("hil-probe: event=samples name=dev-msi kind=lat unit=tsc first=64 v=10,2,300")
    assert line == {"event": "samples", "name": "dev-msi", "kind": "lat", "unit": "tsc", "first": 64,
                    "v": (10, 2, 300)}
    assert parse_probe_line("hil-probe: event=samples name=dev-msi first=0 v=1,x") is None
    assert parse_probe_line("hil-probe: event=op name=net-rx count=3 in_order=1 frames=3")["in_order"] == 1


# ---------------------------------------------------------------- edu


@pytest.mark.parametrize("n,machine,config", [
    (37, "q35", "cf8"),                # SeaBIOS assigned the BARs; legacy configuration ports
    (131, "q35", "cf8"),
    (53, "microvm,pcie=on", "ecam"),   # no 0xcf8, no firmware BARs: ECAM, the probe assigns them
])
def test_dev_msi_one_interrupt_per_request(probe, tmp_path, n, machine, config):
    rc, lines = boot(probe.pvh_path, format_cmdline([("dev-msi", n)], exit=1), tmp_path / "serial.log",
                     ["-device", "edu"], machine=machine)
    assert rc == 1, lines
    assert [line["event"] for line in lines][:4] == ["start", "device", "begin", "op"]
    dev = lines[1]
    assert (dev["kind"], dev["id"], dev["config"]) == ("edu", "1234:11e8", config)
    assert int(dev["mmio"], 16) >= 1 << 30  # above the RAM the boot code maps
    op = op_line(lines, "dev-msi")
    assert (op["count"], op["irqs"], op["raised"], op["samples"]) == (n, n, n, n)
    lat = samples(lines, "dev-msi", "lat")
    assert len(lat) == n
    # request -> handler entry: positive, and under a second of TSC even under TCG
    assert all(0 < v < op["tsc_khz"] * 1000 for v in lat), lat
    assert lines[-1] == {"event": "done", "status": "ok", "ops": 1}


def test_dev_dma_round_trips(probe, tmp_path):
    """edu completes a DMA from a 100 ms QEMU timer: every sample is at least ~100 ms of TSC."""
    rc, lines = boot(probe.path, format_cmdline([("dev-dma", 4), ("dev-msi", 3)], exit=1), tmp_path / "serial.log",
                     ["-device", "edu"])
    assert rc == 1, lines
    op = op_line(lines, "dev-dma")
    assert (op["transfers"], op["irqs"], op["data_errors"], op["samples"]) == (4, 4, 0, 4)
    lat = samples(lines, "dev-dma", "lat")
    assert len(lat) == 4
    assert all(v >= 0.09 * op["tsc_khz"] * 1000 for v in lat), (lat, op["tsc_khz"])
    assert op_line(lines, "dev-msi")["irqs"] == 3  # edu is re-used by the next op


@pytest.mark.parametrize("op,msg,devices,machine", [
    ("dev-msi", "no-edu-device", [], "q35"),
    ("dev-dma", "no-edu-device", ["-device", "virtio-net-pci,romfile="], "q35"),
    ("net-rx", "no-virtio-net-device", ["-device", "edu"], "microvm,pcie=on"),
    ("net-tx", "no-virtio-net-device", [], "microvm"),  # no PCI at all
])
def test_missing_device_is_a_clear_error(probe, tmp_path, op, msg, devices, machine):
    rc, lines = boot(probe.path, format_cmdline([("cpuid", 1), (op, 5)], exit=1), tmp_path / "serial.log", devices,
                     machine=machine)
    assert rc == 3, lines  # (1 << 1) | 1
    assert [line["event"] for line in lines] == ["start", "op", "samples", "error", "done"]   # cpuid timed, then the error
    assert lines[3]["msg"] == msg
    assert lines[4] == {"event": "done", "status": "error", "ops": 1}


# ---------------------------------------------------------------- virtio-net over UDP


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_net(probe, tmp_path, ops: list[tuple[str, int]], netdev: str, send, recv, rx_n: int,
            machine: str = "q35", timeout_us: int = 3_000_000) -> tuple[int, list[dict]]:
    """Boot with virtio-net on `netdev`; once net-rx begins, call send(i) for i < rx_n; recv()
    drains frames the guest sent.  Returns QEMU's exit code and the probe lines."""
    log = tmp_path / "serial.log"
    devices = ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,mac={NIC_MAC.hex(':')},romfile="]
    proc = subprocess.Popen(qemu_argv(probe.path, format_cmdline(ops, exit=1, dev_timeout_us=timeout_us), log, devices,
                                      machine),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if rx_n:
            wait_for(log, "event=begin name=net-rx", proc)
            for i in range(rx_n):
                send(i)
                time.sleep(0.002)
        end = time.monotonic() + 60
        while proc.poll() is None:
            recv()
            assert time.monotonic() < end, "qemu did not finish"
        recv()
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0]
    lines = parse_log(log)
    assert lines, f"no probe output; qemu said: {out!r}"
    return proc.returncode, lines


def check_tx(lines: list[dict], frames: list[bytes], n: int) -> None:
    op = op_line(lines, "net-tx")
    assert (op["frames"], op["irqs"], op["samples"]) == (n, n, n)
    assert 1 <= op["notifies"] <= n
    assert len(samples(lines, "net-tx", "lat")) == n
    ours = [f for f in frames if f[12:14] == FRAME_TYPE.to_bytes(2, "big") and f[14:18] == b"HILP"]
    assert [struct.unpack_from("<I", f, 18)[0] for f in ours] == list(range(n))
    assert all(f[:6] == b"\xff" * 6 and f[6:12] == NIC_MAC and len(f) == 60 for f in ours)


def check_rx(lines: list[dict], n: int, stamps: list[int]) -> None:
    assert any(line["event"] == "device" and line["kind"] == "virtio-net" for line in lines)
    op = op_line(lines, "net-rx")
    assert (op["frames"], op["in_order"], op["first_seq"]) == (n, 1, 0), op
    assert 1 <= op["irqs"] <= n + op["other"]      # frames not ours (the host's own on a tap) interrupt too
    assert op["samples"] == op["irqs"]
    isr = samples(lines, "net-rx", "isr")
    assert len(isr) == op["irqs"] and isr == sorted(isr) and isr[-1] <= op["tsc"]
    assert samples(lines, "net-rx", "sender") == [s - stamps[0] for s in stamps]


@pytest.mark.parametrize("machine", ["q35", "microvm,pcie=on"])
def test_net_tx_and_rx_over_udp_socket(probe, tmp_path, machine):
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    host.setblocking(False)
    qemu_port = free_udp_port()
    netdev = f"socket,id=n0,udp=127.0.0.1:{host.getsockname()[1]},localaddr=127.0.0.1:{qemu_port}"
    got: list[bytes] = []
    stamps: list[int] = []

    def send(i: int) -> None:
        stamps.append(time.monotonic_ns())
        host.sendto(probe_frame(i, stamps[-1]), ("127.0.0.1", qemu_port))

    def recv() -> None:
        try:
            while True:
                got.append(host.recv(4096))
        except BlockingIOError:
            time.sleep(0.01)

    with host:
        rc, lines = run_net(probe, tmp_path, [("net-tx", 23), ("net-rx", 29)], netdev, send, recv, 29, machine)
    assert rc == 1, lines
    check_tx(lines, got, 23)
    check_rx(lines, 29, stamps)
    assert lines[-1] == {"event": "done", "status": "ok", "ops": 2}


def test_net_rx_out_of_order_is_reported(probe, tmp_path):
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    qemu_port = free_udp_port()
    netdev = f"socket,id=n0,udp=127.0.0.1:{host.getsockname()[1]},localaddr=127.0.0.1:{qemu_port}"
    order = [0, 1, 3, 2, 4]
    with host:
        rc, lines = run_net(probe, tmp_path, [("net-rx", 5)], netdev,
                            lambda i: host.sendto(probe_frame(order[i], i), ("127.0.0.1", qemu_port)),
                            lambda: time.sleep(0.01), 5)
    assert rc == 1, lines
    op = op_line(lines, "net-rx")
    assert (op["frames"], op["in_order"]) == (5, 0)


def test_net_rx_timeout_is_an_error_not_a_hang(probe, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as host:
        host.bind(("127.0.0.1", 0))
        netdev = f"socket,id=n0,udp=127.0.0.1:{host.getsockname()[1]},localaddr=127.0.0.1:{free_udp_port()}"
        started = time.monotonic()
        rc, lines = run_net(probe, tmp_path, [("net-rx", 4)], netdev, lambda i: None, lambda: time.sleep(0.01), 0,
                            timeout_us=1_000_000)
    assert rc == 3, lines
    assert op_line(lines, "net-rx")["frames"] == 0
    assert [line["msg"] for line in lines if line["event"] == "error"] == ["net-rx-timeout"]
    assert 1 <= time.monotonic() - started < 30


# ---------------------------------------------------------------- virtio-net over a tap


def tap_capable() -> str | None:
    if os.geteuid() != 0:
        return "creating a tap needs root (CAP_NET_ADMIN)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed"
    return None


@pytest.mark.skipif(tap_capable() is not None, reason=str(tap_capable()))
def test_net_tx_and_rx_over_tap(probe, tmp_path):
    from pyroute2 import IPRoute

    name = f"hilp{os.getpid() % 100000}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        try:
            index = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, state="up")
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(FRAME_TYPE))
            sock.bind((name, FRAME_TYPE))
            sock.setblocking(False)
            got: list[bytes] = []
            stamps: list[int] = []

            def send(i: int) -> None:
                stamps.append(time.monotonic_ns())
                sock.send(probe_frame(i, stamps[-1]))

            def recv() -> None:
                try:
                    while True:
                        data, addr = sock.recvfrom(4096)
                        if addr[2] != socket.PACKET_OUTGOING:  # not our own frames for the guest
                            got.append(data)
                except BlockingIOError:
                    time.sleep(0.01)

            with sock:
                rc, lines = run_net(probe, tmp_path, [("net-tx", 17), ("net-rx", 19)],
                                    f"tap,id=n0,ifname={name},script=no,downscript=no", send, recv, 19)
        finally:
            ipr.link("del", ifname=name)
    assert rc == 1, lines
    check_tx(lines, got, 17)
    check_rx(lines, 19, stamps)
