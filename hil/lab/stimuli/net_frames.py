"""Probe frames on the tap behind L2's virtio-net NIC (hil/lab/devices/virtio_net.py):

- FrameSender (op net-rx): once the guest announces the op, `count` frames `interval_s`
  apart into the tap, each with its sequence number and L1's monotonic clock in ns;
- FrameCounter (op net-tx): the frames the guest sends, read from the tap (the sender's
  own, PACKET_OUTGOING, skipped), with their sequence numbers and arrival times.

Frame: dst ff:ff:ff:ff:ff:ff, src 02:00:00:00:00:01, ethertype 0x88b5, "HILP", u32 seq LE,
u64 timestamp LE, padded to 60 bytes (guest/devices.c).
"""
from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from hil.lab.stimuli.base import Driver, L2Handle, StimulusSpec

ETHERTYPE = 0x88B5
MAGIC = b"HILP"
SRC_MAC = bytes.fromhex("020000000001")
FRAME_LEN = 60
_ETH = struct.Struct("!6s6sH")          # Ethernet header: network byte order
_BODY = struct.Struct("<4sIQ")         # the probe's payload: little-endian


def probe_frame(seq: int, stamp_ns: int) -> bytes:
    return (_ETH.pack(b"\xff" * 6, SRC_MAC, ETHERTYPE)
            + _BODY.pack(MAGIC, seq & 0xFFFFFFFF, stamp_ns & (1 << 64) - 1)).ljust(FRAME_LEN, b"\0")


def parse_frame(frame: bytes) -> tuple[int, int] | None:
    """(seq, timestamp) of a probe frame, None for anything else."""
    if len(frame) < _ETH.size + _BODY.size:
        return None
    etype = _ETH.unpack_from(frame)[2]
    magic, seq, stamp = _BODY.unpack_from(frame, _ETH.size)
    return (seq, stamp) if etype == ETHERTYPE and magic == MAGIC else None


def _packet_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    s.bind((ifname, ETHERTYPE))
    return s


@dataclass(frozen=True)
class FrameSender(StimulusSpec):
    kind: ClassVar[str] = "frame-sender"
    ifname: str
    after: str               # regex on L2's serial output that starts the frames
    count: int
    interval_s: float
    start_delay_s: float = 0.0

    def driver(self) -> Driver:
        return _Sender(self)


class _Sender(Driver):
    def __init__(self, spec: FrameSender):
        self.spec = spec
        self.after = re.compile(spec.after)
        self.thread: threading.Thread | None = None
        self.sent = 0
        self.error = ""
        self.elapsed_s = 0.0

    def _send(self) -> None:
        try:
            with _packet_socket(self.spec.ifname) as s:
                time.sleep(self.spec.start_delay_s)
                t0 = time.monotonic()
                for i in range(self.spec.count):
                    # at least interval_s apart: a late send (L1's Python under TCG stalls now
                    # and then) delays the rest rather than bunching them into a burst
                    if i:
                        time.sleep(self.spec.interval_s)
                    s.send(probe_frame(i, time.monotonic_ns()))
                    self.sent += 1
                self.elapsed_s = time.monotonic() - t0
        except OSError as e:
            self.error = f"{type(e).__name__}: {e}"

    def on_serial(self, text: str, vm: L2Handle) -> None:
        if self.thread is None and self.after.search(text):
            self.thread = threading.Thread(target=self._send, name="hil-frame-sender", daemon=True)
            self.thread.start()

    def finish(self, vm: L2Handle) -> None:
        if self.thread is not None:
            self.thread.join(timeout=self.spec.count * self.spec.interval_s + 5.0)

    def result(self) -> dict[str, Any]:
        return {"ifname": self.spec.ifname, "sent": self.sent, "asked": self.spec.count,
                "started": self.thread is not None, "elapsed_s": self.elapsed_s, "error": self.error}


@dataclass(frozen=True)
class FrameCounter(StimulusSpec):
    kind: ClassVar[str] = "frame-counter"
    ifname: str

    def driver(self) -> Driver:
        return _Counter(self)


class _Counter(Driver):
    def __init__(self, spec: FrameCounter):
        self.spec = spec
        self.sock: socket.socket | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.seqs: list[int] = []
        self.arrivals_ns: list[int] = []
        self.other = 0
        self.error = ""

    def before_start(self, vm: L2Handle) -> None:
        self.sock = _packet_socket(self.spec.ifname)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._read, name="hil-frame-counter", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.sock is not None
        while not self.stop.is_set():
            try:
                frame, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError as e:
                self.error = f"{type(e).__name__}: {e}"
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            got = parse_frame(frame)
            if got is None:
                self.other += 1
                continue
            self.seqs.append(got[0])
            self.arrivals_ns.append(time.monotonic_ns())

    def finish(self, vm: L2Handle) -> None:
        time.sleep(0.1)           # the last frame may still be on its way through the tap
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2.0)
        if self.sock is not None:
            self.sock.close()

    def result(self) -> dict[str, Any]:
        in_order = sum(1 for i, s in enumerate(self.seqs) if s == i)
        gaps = [b - a for a, b in zip(self.arrivals_ns, self.arrivals_ns[1:])]
        return {"ifname": self.spec.ifname, "frames": len(self.seqs), "in_order": in_order, "other": self.other,
                "first_seq": self.seqs[0] if self.seqs else None, "gaps_ns": gaps[:4096], "error": self.error}
