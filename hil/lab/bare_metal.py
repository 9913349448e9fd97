"""`hil run --host`: the L1 side (agent, L2 QEMU, tracefs) directly on this machine, for a
lab box whose own KVM (VMX or SVM) is under test. The agent runs in-process with the same
code L1 runs; the session looks like an L1Session to run_on(), minus boot and snapshot."""
from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from hil.lab.accel import AccelChoice
from hil.lab.assets.probe import cached_probe
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.progress import OpEvents

HOST_ACCEL = AccelChoice("kvm", "bare metal (hil run --host): this machine's own KVM runs L2", False)


class _Here:
    """The 'L1 machine' of a host session: always running, never exits."""
    exitcode = None

    @staticmethod
    def is_running() -> bool:
        return True


class HostSession:
    restore = False
    snapshot = None
    boot_argv: list[str] = []            # nothing boots: no repro.sh for the L1 level

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.console_log = log_dir / "host-info.json"
        self.argv = ["(this machine: hil run --host)"]
        self.machine = _Here()
        self.info: dict[str, Any] = {}
        self.boot_seconds = 0.0
        self._agent: Any = None

    def start(self) -> None:
        from hil.lab.agent.service import Agent, host_info   # the L1 side's code, run here
        t0 = time.monotonic()
        self.info = host_info()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_text(json.dumps(self.info, indent=2))
        if os.geteuid() != 0:
            raise CapabilityMissing("hil run --host needs root (tracefs hist triggers, /run/hil, KVM's stats)")
        if not self.info.get("kvm_dev"):
            raise CapabilityMissing("hil run --host: this machine has no /dev/kvm (load kvm-intel or kvm-amd)")
        self._agent = Agent()
        self.boot_seconds = time.monotonic() - t0

    def request(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
        self._agent.notify = OpEvents().event    # the agent's per-op progress, as L1's would come
        reply = self._agent.handle({"id": 1, "cmd": cmd, "args": args or {}})
        if not reply.get("ok"):
            raise LabError(f"host agent: {reply.get('error')}" + (f"\n{reply['traceback']}" if "traceback" in reply else ""))
        return reply["result"]

    def put_file(self, path: str, data: bytes) -> None:
        self.request("put_file", {"path": path, "data": base64.b64encode(data).decode()})

    def close(self) -> None:
        self._agent = None


def prepare_host(needs_probe: bool) -> Any:
    """A Prepared with no L1 image: the probe (when the workload is one) and the host accel."""
    from hil.lab.run import Prepared
    t0 = time.monotonic()
    probe = cached_probe() if needs_probe else None
    return Prepared(None, probe, HOST_ACCEL, {"probe_build": time.monotonic() - t0})  # type: ignore[arg-type]
