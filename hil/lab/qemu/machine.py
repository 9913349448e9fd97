"""One QEMU lifecycle for every level (L0 runs L1 with it; the L1 agent runs L2 with it).

A context manager in the manner of QEMU's python/qemu/machine: a private run directory,
QMP through qemu.qmp (QEMU connects to our listening socket, so there is no race on
start-up), output to a log file, a launch error that carries the command line and
output, and a quit -> SIGTERM -> SIGKILL ladder. Everything it creates is freed in
shutdown(); logs live outside the run directory and are kept.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp.legacy import QEMUMonitorProtocol

from hil.lab import owner, signals
from hil.lab.errors import LabError, LaunchError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If hil itself is killed, the kernel kills QEMU too: no orphaned guests.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def private_dir(prefix: str, parent: Path | None = None) -> Path:
    """A 0700 temp dir named prefix + this process's owner tag: if hil is killed outright, the
    next hil's start-up sweep (hil/lab/sweep.py) sees its owner is gone and removes it."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner.tag()}.", dir=parent))
    path.chmod(0o700)
    return path


class Machine:
    """A QEMU process with a QMP monitor.

    argv is the full command line except the monitor, which this class adds so that the
    socket always lives in the private run directory.
    """

    def __init__(self, argv: list[str], *, name: str, log_dir: Path, run_dir: Path | None = None,
                 qmp_timeout: float = 30.0):
        self.name = name
        self.base_argv = list(argv)
        self.log_dir = log_dir
        self._own_run_dir = run_dir is None
        self.run_dir = run_dir if run_dir is not None else private_dir(f"hil-{name}-")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        self.qmp_path = self.run_dir / "qmp.sock"
        self.output_log = log_dir / f"{name}-qemu.log"
        self.qmp_timeout = qmp_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: QEMUMonitorProtocol | None = None
        self.started_at = 0.0

    @property
    def argv(self) -> list[str]:
        return self.base_argv + ["-chardev", f"socket,id=hilmon,path={self.qmp_path}",
                                 "-mon", "chardev=hilmon,mode=control"]

    # -- lifecycle -----------------------------------------------------------------
    def launch(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.qmp = QEMUMonitorProtocol(str(self.qmp_path), server=True, nickname=self.name)
        out = open(self.output_log, "wb")
        try:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        except OSError as e:
            out.close()
            self.shutdown()
            raise LaunchError(f"{self.name}: cannot execute QEMU: {e}", self.argv, "", None) from e
        out.close()
        accepting = threading.Event()
        accepting.set()
        watcher = threading.Thread(target=self._unblock_accept, args=(accepting,), daemon=True)
        watcher.start()
        try:
            self.qmp.accept(timeout=self.qmp_timeout)
            self.qmp.settimeout(self.qmp_timeout)   # no QMP command may hang the run
        except Exception as e:
            code = self.proc.poll()
            self.shutdown()
            raise LaunchError(f"{self.name}: QEMU did not come up on QMP ({type(e).__name__}: {e})",
                              self.argv, self.output(), code) from e
        finally:
            accepting.clear()
            watcher.join()

    def _unblock_accept(self, accepting: threading.Event) -> None:
        """A QEMU that exits before connecting to its monitor (a bad option, a missing file)
        would leave accept() waiting out qmp_timeout: once it is gone, a connection that closes
        at once ends the wait (the handshake fails, launch() reports QEMU's exit and output)."""
        assert self.proc is not None
        while accepting.is_set():
            if self.proc.poll() is not None:
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.qmp_path))
                return
            accepting.wait(0.02)

    def output(self) -> str:
        try:
            return self.output_log.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def exitcode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, name: str, **args: Any) -> Any:
        if self.qmp is None or not self.is_running():
            raise LabError(f"{self.name}: QMP command {name} on a QEMU that is not running "
                           f"(exit code {self.exitcode})")
        try:
            return self.qmp.cmd(name, **args)
        except (TimeoutError, asyncio.TimeoutError) as e:
            raise LabError(f"{self.name}: QMP command {name} got no answer within {self.qmp_timeout:.0f} s") from e
        except Exception as e:     # the monitor went away (QEMU died mid-command) or refused it
            stop = signals.pending()
            if stop is not None:    # a stop signal qemu.qmp caught in its event loop: still a stop
                raise stop from e
            self.wait(1.0)
            raise LabError(f"{self.name}: QMP command {name} failed ({type(e).__name__}: {e}); "
                           f"QEMU exit code {self.exitcode}") from e

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def is_frozen(self) -> bool:
        """Stopped by a signal (SIGSTOP, a debugger): it answers neither QMP nor SIGTERM."""
        if not self.is_running():
            return False
        assert self.proc is not None
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return False
        return stat[stat.rindex(")") + 2:].split()[0] in ("T", "t")

    def shutdown(self, timeout: float = 5.0) -> int | None:
        """quit over QMP, then SIGTERM, then SIGKILL (at once for a frozen QEMU); always frees
        sockets and the run dir."""
        try:
            if self.is_frozen():
                assert self.proc is not None
                self.proc.kill()
                self.wait(timeout)
            if self.is_running() and self.qmp is not None:
                try:
                    self.qmp.settimeout(timeout)
                    self.qmp.cmd("quit")
                    self.wait(timeout)
                except Exception:
                    pass  # a dead, wedged or never connected monitor: the signals below take over
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if self.is_running():
                    assert self.proc is not None
                    self.proc.send_signal(sig)
                    self.wait(timeout)
        finally:
            if self.qmp is not None:
                try:
                    self.qmp.close()
                except Exception:
                    pass
                self.qmp = None
            if self._own_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            else:
                for sock in self.run_dir.glob("*.sock"):
                    sock.unlink(missing_ok=True)
        return self.exitcode

    def __enter__(self) -> "Machine":
        self.launch()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
