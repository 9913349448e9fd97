"""The agent's request loop: JSON lines from L0 on a serial port, one reply per request."""
from __future__ import annotations

import json
import os
import platform
import sys
import termios
import time
import traceback
import tty
from pathlib import Path
from typing import Any, Callable

from hil.lab.kvm import tracing
from hil.lab.agent.early import BootL2, run_dir
from hil.lab.agent.l2 import L2Runner
from hil.lab.agent.protocol import QEMU_LOG_CAP, L2Request
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.qemu.host import QEMU_BINARY, qemu_version

EXEC_CAP = 1 << 20          # bytes of a command's stdout (and stderr) sent back at most


def host_info() -> dict[str, Any]:
    """What the L1 (or bare-metal) host is: provenance for every result."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""
    cpuinfo = read("/proc/cpuinfo")
    flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "")
    modules = sorted(l.split()[0] for l in read("/proc/modules").splitlines() if l)
    params = {}
    for mod in ("kvm", "kvm_amd", "kvm_intel"):
        pdir = Path(f"/sys/module/{mod}/parameters")
        if pdir.is_dir():
            params[mod] = {p.name: read(str(p)) for p in sorted(pdir.iterdir())}
    arch = "svm" if "svm" in flags else "vmx" if "vmx" in flags else "none"
    # kvm and its vendor module, loaded or built in: a series whose modules failed to load is
    # the kernel under test breaking, not a missing capability
    wanted = ("kvm", {"svm": "kvm_amd", "vmx": "kvm_intel"}.get(arch, ""))
    missing = [m for m in wanted if m and not Path(f"/sys/module/{m}").is_dir()]
    return {
        "kernel": platform.release(), "kernel_version": platform.version(), "cmdline": read("/proc/cmdline"),
        "cpu_model": model, "arch": arch, "kvm_modules_missing": missing,
        "nproc": os.cpu_count(), "modules": modules, "kvm_params": params,
        "kvm_dev": os.path.exists("/dev/kvm"), "tracefs": tracing.Tracefs().available(),
        "qemu": qemu_version(QEMU_BINARY) if os.path.exists(QEMU_BINARY) else "",
        "python": platform.python_version(),
    }


class Agent:
    def __init__(self, boot: BootL2 | None = None) -> None:
        """boot: L2's QEMU started from L0's boot request (hil/lab/agent/early.py), kept for
        the run_l2 with the same argv."""
        self.run_dir = run_dir()
        self._runner: L2Runner | None = None
        self.boot = boot
        if boot is not None and boot.machine is not None and boot.request is not None:
            try:
                self.runner().adopt_at_boot(L2Request.from_json(boot.request), boot.machine)
            except Exception as e:     # reported in the ready event; the run starts its own L2
                boot.machine.shutdown()
                boot.machine, boot.error = None, f"{type(e).__name__}: {e}"
        # progress events sent while a request runs (serve(): to L0; bare metal: to the log)
        self.notify: Callable[[dict[str, Any]], None] = lambda msg: None
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "hello": lambda a: host_info(),
            "run_l2": self.run_l2,
            "park_l2": self.park_l2,
            "put_file": self.put_file,
            "poweroff": self.poweroff,
            "logs": self.logs,
            "exec": self.exec,
            "warm_up": self.warm_up,
        }

    def runner(self) -> L2Runner:
        if self._runner is None:
            self._runner = L2Runner(self.run_dir / "l2", self.run_dir / "logs")
        return self._runner

    def run_l2(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.runner().run(L2Request.from_json(args), self.notify).to_json()

    def park_l2(self, args: dict[str, Any]) -> dict[str, Any]:
        """L2's QEMU for this request started paused and kept: L0 snapshots L1 now, and the runs
        restored from that snapshot adopt it in run_l2 instead of starting QEMU (whose first
        start after a restore costs 0.8-1.1 s under TCG)."""
        return self.runner().park(L2Request.from_json(args))

    def warm_up(self, args: dict[str, Any]) -> dict[str, Any]:
        """Asked by L0 just before it saves the idle-L1 snapshot: the hist triggers are set up
        then (0.04-0.13 s under TCG), not by every run restored from it. (An L2 QEMU started
        once here too did not make the first start after a restore faster: that one is slow
        because L0's TCG translates L1's code afresh after every restore.)"""
        t0 = time.monotonic()
        self.runner()
        return {"seconds": round(time.monotonic() - t0, 3)}

    def put_file(self, args: dict[str, Any]) -> dict[str, Any]:
        import base64
        path = Path(args["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(args["data"]))
        return {"path": str(path), "size": path.stat().st_size}

    def exec(self, args: dict[str, Any]) -> dict[str, Any]:
        """One command in L1, waited for: its exit code and output's tails. The lab's own tests
        use it (tests/integration/test_host_in_l1.py runs `hil run --host` inside L1); it
        grants L0 nothing run_l2 does not (that runs any argv L0 sends, as root)."""
        import subprocess
        argv = [str(a) for a in args["argv"]]
        timeout = float(args.get("timeout", 60.0))
        env = {**os.environ, **{str(k): str(v) for k, v in dict(args.get("env") or {}).items()}}
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env,
                                  cwd=args.get("cwd"))
        except subprocess.TimeoutExpired as e:
            raise LabError(f"L1: {argv} ran past {timeout:g} s") from e
        except OSError as e:
            raise LabError(f"L1: cannot run {argv}: {e}") from e
        return {"returncode": proc.returncode, "stdout": proc.stdout[-EXEC_CAP:].decode(errors="replace"),
                "stderr": proc.stderr[-EXEC_CAP:].decode(errors="replace")}

    def logs(self, args: dict[str, Any]) -> dict[str, str]:
        """The tails of L1's run logs (L2 QEMU's own log): fetched by L0 when run_l2 failed."""
        out = {}
        for path in sorted((self.run_dir / "logs").glob("*.log")):
            try:
                with open(path, "rb") as f:
                    f.seek(max(0, path.stat().st_size - QEMU_LOG_CAP))
                    out[path.name] = f.read().decode(errors="replace")
            except OSError as e:
                out[path.name] = f"(unreadable: {e})"
        return out

    def poweroff(self, args: dict[str, Any]) -> dict[str, Any]:
        os.sync()
        self.stop = True
        return {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id")
        try:
            handler = self.handlers[request["cmd"]]
            return {"id": rid, "ok": True, "result": handler(request.get("args", {}))}
        except CapabilityMissing as e:       # L0 reports it as SKIP
            return {"id": rid, "ok": False, "error": str(e), "kind": "capability"}
        except LabError as e:
            return {"id": rid, "ok": False, "error": str(e), "kind": "lab"}
        except Exception as e:
            return {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(), "kind": "agent"}

    def serve(self, port: str) -> None:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        if os.isatty(fd):
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = termios.B115200
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        reader = os.fdopen(fd, "rb", buffering=0)
        writer = os.fdopen(os.dup(fd), "wb", buffering=0)
        self.stop = False

        def send(msg: dict[str, Any]) -> None:
            data = memoryview(json.dumps(msg).encode() + b"\n")
            while data:   # unbuffered writes may be partial
                data = data[writer.write(data):]

        self.notify = send
        info = host_info()
        if self.boot is not None:     # L0 uploads the payload and starts L2 itself unless started
            info["boot_l2"] = self.boot.status()
        send({"event": "ready", "info": info})
        _kmsg("hil-agent: ready")
        pending: list[bytes] = []   # chunks of the current line: joined once, not re-copied per chunk
        while not self.stop:
            chunk = reader.read(1 << 20)
            if not chunk:
                break
            while b"\n" in chunk and not self.stop:
                head, chunk = chunk.split(b"\n", 1)
                line = b"".join(pending) + head
                pending.clear()
                if line.strip():
                    send(self.handle(json.loads(line)))
            if chunk:
                pending.append(chunk)
        if self.stop:
            _poweroff()


def _kmsg(text: str) -> None:
    try:
        with open("/dev/kmsg", "w") as f:
            f.write(f"<4>{text}\n")
    except OSError:
        pass


def _poweroff() -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sync()
    libc.reboot(0x4321FEDC)   # LINUX_REBOOT_CMD_POWER_OFF
    sys.exit(0)
