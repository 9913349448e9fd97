"""The agent's start in a booted L1, made to overlap what the boot does anyway (issue 15's boot
path): L1's init starts the agent while it loads the KVM modules, and starts the first L2 run's
QEMU (paused) from the request L0 put into fw_cfg (hil/lab/run.py boot_l2_fw_cfg) while the
agent's Python imports. The agent waits for the modules, then adopts that QEMU as it adopts a
parked one (hil/lab/agent/l2.py). This module imports only what that needs."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.lab.errors import LabError
from hil.lab.qemu.machine import QMP_SOCKET, ChildProcess, Machine, monitor_args

RUN_DIR = Path("/run/hil")                 # the agent's private directory in L1
FW_CFG = Path("/sys/firmware/qemu_fw_cfg/by_name")
VIRTIO_PORTS = Path("/sys/class/virtio-ports")
# What L0 puts into a booting L1's fw_cfg (l1_init.sh reads the argv and the payload):
BOOT = "opt/hil/boot"
BOOT_REQUEST = f"{BOOT}/request"           # JSON: the run's L2Request.to_json()
BOOT_ARGV = f"{BOOT}/argv"                 # L2's QEMU command line as init runs it, a word per line
BOOT_PAYLOAD = f"{BOOT}/payload"           # BOOT_PAYLOAD/<name>, gzip'd: init unpacks it to PAYLOAD_DIR/<name>
PAYLOAD_DIR = RUN_DIR / "payload"
BOOT_PID = "boot.pid"                      # in L2's run dir, written by init: the QEMU it started
# set by l1_init.sh: the file its module loader creates when done (bare metal: not set)
MODULES_MARK_ENV = "HIL_MODULES_LOADED"


def run_dir() -> Path:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.chmod(0o700)
    return RUN_DIR


def l2_machine(argv: list[str], run_dir: Path, log_dir: Path) -> Machine:
    """L2's QEMU as every run starts it: paused (pinning, ioctls and stimuli are set before the
    guest runs), its monitor socket in run_dir."""
    return Machine(argv + ["-S"], name="l2", log_dir=log_dir, run_dir=run_dir)


def boot_argv(argv: list[str]) -> list[str]:
    """The command line init runs for a boot request: l2_machine's, with QEMU listening on the
    monitor socket (nobody listens for it yet)."""
    return argv + ["-S"] + monitor_args(RUN_DIR / "l2" / QMP_SOCKET, server=True)


def wait_for_modules(timeout: float = 120.0) -> None:
    """Until init's module loader is done (its KVM modules are what the agent reports and
    measures with). The agent's imports ran meanwhile."""
    mark = os.environ.get(MODULES_MARK_ENV)
    if not mark:
        return
    deadline = time.monotonic() + timeout
    while not os.path.exists(mark):
        if time.monotonic() > deadline:
            raise LabError(f"L1's init did not finish loading its modules within {timeout:.0f} s")
        time.sleep(0.005)


def agent_port(port: str) -> str:
    """A device path, or virtio:NAME: the virtio-serial port of that name (init's channel to
    L0), else the second UART."""
    if not port.startswith("virtio:"):
        return port
    for name in VIRTIO_PORTS.glob("*/name"):
        try:
            if name.read_text().strip() == port.removeprefix("virtio:"):
                return f"/dev/{name.parent.name}"
        except OSError:
            continue
    print(f"hil-agent: no virtio-serial port {port.removeprefix('virtio:')}, falling back to ttyS1", flush=True)
    return "/dev/ttyS1"


@dataclass
class BootL2:
    """The L2 QEMU init started from the boot request (machine: adopted, not yet attached), or why not."""
    request: dict[str, Any] | None = None
    machine: Machine | None = None
    error: str = ""

    def status(self) -> dict[str, Any]:
        return {"started": self.machine is not None, "error": self.error}


def adopt_boot_l2() -> BootL2 | None:
    """None when L0 sent no boot request; else init's QEMU for it, adopted. A failure is
    reported, not raised: L0 then uploads and the run starts L2 itself."""
    if not (FW_CFG / BOOT_REQUEST).is_dir():
        return None
    try:
        request = json.loads((FW_CFG / BOOT_REQUEST / "raw").read_bytes())
        here = run_dir()
        machine = l2_machine([str(a) for a in request["argv"]], here / "l2", here / "logs")
        machine.adopt(ChildProcess(int((machine.run_dir / BOOT_PID).read_text())))
        return BootL2(request, machine)
    except Exception as e:       # the agent must come up whatever L0 put there
        return BootL2(error=f"{type(e).__name__}: {e}")
