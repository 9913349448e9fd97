"""Scenario in, the agent's typed request for one L2 run out (plus the payload to upload)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hil.lab.agent.protocol import L2Request, VcpuIoctl
from hil.lab.assets.probe import ProbeImage, format_cmdline
from hil.lab.devices import DeviceSpec, VfioPci, VirtioNet
from hil.lab.kernel.abi import DEDICATED_MODES, KVM_SET_DEDICATED
from hil.lab.qemu.argv import L2Paths, l2_argv
from hil.lab.stimuli import FrameCounter, FrameSender, HostInterruptsPerOp, IoThreadMsi, StimulusSpec
from hil.scenario import L2Config, Scenario
from hil.scenario.config import VfioPciDevice, VirtioNetDevice
from hil.scenario.probe_ops import PROBE_OPS

PROBE_DONE = r"hil-probe: event=done"
# kvm-unit-tests' exit(): outl(code, 0xf4) -> QEMU exits with (code << 1) | 1 (x86/run adds it too)
KUT_EXIT_DEVICE = ("-device", "isa-debug-exit,iobase=0xf4,iosize=0x4")
KICK_VECTORS = (0x50, 0x60)      # guest/probe.c: the kicks' vectors (ipi-race: pairs A and B)
# The probe waits this long after announcing an op that takes interrupts from outside
# (`event=begin`) before it starts it: the host snapshots its counters meanwhile (it looks
# every 50 ms), and the first MSI is sent after it.
BEGIN_WAIT_US = 200_000
START_MARGIN_S = 0.1
# cli-window: each window holds IF=0 for this share of the MSI interval, so at most one MSI
# arrives per window (two would merge in the one IRR bit of their vector), while IF=1 only for
# the few instructions between windows: nearly every MSI arrives with IF=0 and waits for a sti
CLI_WINDOW_SHARE = 0.25


@dataclass(frozen=True)
class Payload:
    kernel: bytes
    initrd: bytes | None = None

    def sha256(self) -> dict[str, str | None]:
        """The payload's identity (a parked L2 QEMU has loaded exactly these bytes)."""
        return {"kernel": hashlib.sha256(self.kernel).hexdigest(),
                "initrd": hashlib.sha256(self.initrd).hexdigest() if self.initrd is not None else None}


def dedicate(l2: L2Config) -> list[VcpuIoctl]:
    """KVM_SET_DEDICATED for every vCPU, issued by hil in QEMU's vCPU threads (QEMU knows no such ioctl).
    direct needs an isolated L1 CPU of the vCPU's own, and the lab's L1 has one: vCPU 0 gets
    direct, the others v2 (the kernel refuses direct on a CPU that is not isolated)."""
    if l2.dedicated == "off":
        return []
    if l2.dedicated == "direct":
        return [VcpuIoctl(i, KVM_SET_DEDICATED, DEDICATED_MODES["direct" if i == 0 else "v2"]) for i in range(l2.smp)]
    return [VcpuIoctl(i, KVM_SET_DEDICATED, DEDICATED_MODES[l2.dedicated]) for i in range(l2.smp)]


def device_specs(l2: L2Config) -> list[DeviceSpec]:
    """The topology's L2 devices as the lab's specs (hil/lab/devices)."""
    out: list[DeviceSpec] = []
    for d in l2.devices:
        if isinstance(d, VfioPciDevice):
            out.append(VfioPci(model=d.model))
        elif isinstance(d, VirtioNetDevice):
            out.append(VirtioNet(vhost=d.vhost, bridge=d.bridge))
        else:
            raise AssertionError(f"no lab spec for device {d!r}")
    return out


def _tap(scenario: Scenario) -> str:
    return next(d.tap for d in device_specs(scenario.topology.l2) if isinstance(d, VirtioNet))


def stimuli(scenario: Scenario) -> list[StimulusSpec]:
    """The interrupt sources hil drives for the scenario's probe ops (hil/lab/stimuli)."""
    wl = scenario.workload
    out: list[StimulusSpec] = []
    if any(PROBE_OPS[o.op].judge == "kicks" or PROBE_OPS[o.op].device for o in wl.ops):
        # first: drivers see the serial output in order, and its snapshot at an op's begin line
        # must come before a source (the MSIs) that the same look at the output sets off
        out.append(HostInterruptsPerOp())
    for o in wl.ops:
        source = PROBE_OPS[o.op].stimulus
        if source == "io-thread-msi":
            out.append(IoThreadMsi(after=rf"hil-probe: event=begin name={o.op}\b", count=o.count,
                                   interval_s=wl.kick_interval_ms / 1000,
                                   start_delay_s=BEGIN_WAIT_US / 1e6 + START_MARGIN_S, data=KICK_VECTORS[0]))
        elif source == "frame-sender":
            # the guest starts waiting for frames as it announces net-rx (no settle wait)
            out.append(FrameSender(ifname=_tap(scenario), after=rf"hil-probe: event=begin name={o.op}\b",
                                   count=o.count, interval_s=wl.frame_interval_us / 1e6))
        elif source == "frame-counter":
            out.append(FrameCounter(ifname=_tap(scenario)))
        elif source is not None:
            raise AssertionError(f"probe op {o.op}: no driver for stimulus {source}")
    return out


def build_request(scenario: Scenario, probe: ProbeImage | None) -> tuple[L2Request, Payload]:
    """The agent request for the scenario's workload, plus the payload (kernel, initrd)."""
    wl, l2 = scenario.workload, scenario.topology.l2
    paths = L2Paths()
    common = dict(serial_log=paths.serial_log, timeout=float(l2.timeout), before_start=dedicate(l2),
                  pin=list(l2.pin))
    if wl.kind == "probe":
        assert probe is not None
        windows = {"cli_window_us": round(wl.kick_interval_ms * 1000 * CLI_WINDOW_SHARE)} if any(
            o.op == "cli-window" for o in wl.ops) else {}
        append = format_cmdline([(o.op, o.count) for o in wl.ops], hlt_timer_us=wl.hlt_timer_us,
                                race_timeout_us=wl.race_timeout_us, begin_wait_us=BEGIN_WAIT_US,
                                dev_timeout_us=wl.dev_timeout_us, **windows)
        return (L2Request(argv=l2_argv(l2, append=append, paths=paths), done_pattern=PROBE_DONE,
                          window=probe.window, stimuli=stimuli(scenario), devices=device_specs(l2),
                          ops=[o.op for o in wl.ops], **common),
                Payload(probe.path.read_bytes()))
    assert wl.kernel is not None
    initrd = Path(wl.initrd).read_bytes() if wl.initrd else None
    return (L2Request(argv=l2_argv(l2, append=wl.append, paths=paths, initrd=initrd is not None) + list(KUT_EXIT_DEVICE),
                      done_pattern=wl.done_pattern, window=None, devices=device_specs(l2), **common),
            Payload(Path(wl.kernel).read_bytes(), initrd))
