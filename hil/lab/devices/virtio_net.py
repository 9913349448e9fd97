"""A virtio-net NIC in L2 whose backend is a tap in L1, created by the agent with pyroute2
(optionally in a bridge of its own), with QEMU's userspace backend or vhost-net.

Frames reach L2 from hil's frame sender on the tap and leave it to hil's frame counter
(hil/lab/stimuli/net_frames.py). The tap (and bridge) is removed after the run, also when
it fails; one left by a killed run is removed before the next is created.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hil.lab.devices.base import Attached, DeviceSpec, load_modules
from hil.lab.devices.irqfd import MsiInjections, Observers
from hil.lab.errors import CapabilityMissing
from hil.lab.stimuli.base import Driver

TAP = "hiltap0"
BRIDGE = "hilbr0"
GUEST_MAC = "52:54:00:12:34:56"
FIX = "rebuild the L1 image (hil/lab/assets/l1_image.py MODULE_GROUPS['net'])"


@dataclass(frozen=True)
class VirtioNet(DeviceSpec):
    kind: ClassVar[str] = "virtio-net"
    vhost: bool = False
    bridge: bool = False
    tap: str = TAP

    def module_group(self) -> str | None:
        return "net"

    def l2_argv(self) -> list[str]:
        # modern-only virtio (the probe drives virtio 1.0), MSI-X, no option ROM (nothing to boot from it)
        return ["-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no,vhost={'on' if self.vhost else 'off'}",
                "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile="]

    def attach(self, run_dir: Path) -> Attached:
        load_modules("net", FIX)
        if not Path("/dev/net/tun").exists():
            raise CapabilityMissing(f"L1 has no /dev/net/tun (tun module not loaded?): {FIX}")
        if self.vhost and not Path("/dev/vhost-net").exists():
            raise CapabilityMissing(f"L1 has no /dev/vhost-net (vhost_net module not loaded?): {FIX}")
        try:
            import pyroute2  # noqa: F401  (shipped in the L1 image; imported only here)
        except ImportError as e:
            raise CapabilityMissing(f"pyroute2 is not in L1's image ({e}): {FIX}") from e
        att = Attached(self.l2_argv(), {"tap": self.tap, "vhost": self.vhost},
                       Observers([MsiInjections(), VhostActivity(self.vhost)]))
        try:
            self._create(att)
        except BaseException:
            att.teardown()                  # a half-done set-up is undone here: the run never gets it
            raise
        return att

    def _create(self, att: Attached) -> None:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            for name in (self.tap, BRIDGE):      # left over by a run that was killed
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)
            try:
                ipr.link("add", ifname=self.tap, kind="tuntap", mode="tap")
            except Exception as e:
                raise CapabilityMissing(f"cannot create a tap in L1: {type(e).__name__}: {e}") from e
            att.undo.append(lambda: _delete(self.tap))
            tap = ipr.link_lookup(ifname=self.tap)[0]
            _no_ipv6(self.tap)           # no router solicitations into the guest's receive ring
            if self.bridge:
                if not Path("/sys/module/bridge").is_dir():
                    raise CapabilityMissing(f"L1's kernel has no bridge support (module bridge not loaded): {FIX}")
                ipr.link("add", ifname=BRIDGE, kind="bridge")
                att.undo.append(lambda: _delete(BRIDGE))
                br = ipr.link_lookup(ifname=BRIDGE)[0]
                _no_ipv6(BRIDGE)
                ipr.link("set", index=tap, master=br)
                ipr.link("set", index=br, state="up")
                att.info["bridge"] = BRIDGE
            ipr.link("set", index=tap, state="up")


def _delete(name: str) -> None:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        for idx in ipr.link_lookup(ifname=name):
            ipr.link("del", index=idx)


def _no_ipv6(name: str) -> None:
    knob = Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6")
    if knob.exists():
        knob.write_text("1")


class VhostActivity(Driver):
    """vhost-net's worker threads of L2's QEMU (kernel threads vhost-<pid>): their wake-ups
    (context switches) and CPU time over the run. Nothing without vhost."""

    def __init__(self, vhost: bool):
        self.vhost = vhost
        self.before: dict[int, tuple[int, int]] = {}
        self.after: dict[int, tuple[int, int]] = {}

    def _threads(self, pid: int) -> dict[int, tuple[int, int]]:
        out = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if (d / "comm").read_text().strip() != f"vhost-{pid}":
                    continue
                status = dict(l.split(":", 1) for l in (d / "status").read_text().splitlines() if ":" in l)
                stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
            out[int(d.name)] = (switches, int(stat[11]) + int(stat[12]))   # utime + stime, clock ticks
        return out

    def before_start(self, vm: Any) -> None:
        if self.vhost:
            self.before = self._threads(vm.pid)
            self.pid = vm.pid

    def finish(self, vm: Any) -> None:
        if self.vhost:
            self.after = self._threads(vm.pid)

    def result(self) -> dict[str, Any]:
        if not self.vhost:
            return {"vhost": False}
        hz = os.sysconf("SC_CLK_TCK")
        return {"vhost": True, "threads": len(self.after),
                "wakeups": sum(a[0] - self.before.get(t, (0, 0))[0] for t, a in self.after.items()),
                "cpu_s": sum(a[1] - self.before.get(t, (0, 0))[1] for t, a in self.after.items()) / hz}
