"""One QEMU lifecycle for every level (L0 runs L1 with it; the L1 agent runs L2 with it).

A context manager in the manner of QEMU's python/qemu/machine: a private run directory,
QMP through qemu.qmp (QEMU connects to our listening socket, so there is no race on
start-up), output to a log file, a launch error that carries the command line and
output, and a quit -> SIGTERM -> SIGKILL ladder. Everything it creates is freed in
shutdown(); logs live outside the run directory and are kept.

launch() is spawn() then attach(). A booted L1's init starts its first L2 QEMU itself, with
QEMU listening on the monitor socket (monitor_args(server=True)), and the agent adopts it:
adopt() then attach() (hil/lab/agent/early.py). qemu.qmp (and asyncio, ~0.3 s under TCG) is imported
only in attach().
"""
from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hil.lab import owner
from hil.lab.errors import LabError, LaunchError

if TYPE_CHECKING:
    from qemu.qmp.legacy import QEMUMonitorProtocol

_PR_SET_PDEATHSIG = 1
QMP_SOCKET = "qmp.sock"        # the monitor's socket, in the machine's run directory


def _die_with_parent() -> None:
    # If hil itself is killed, the kernel kills QEMU too: no orphaned guests.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def private_dir(prefix: str, parent: Path | None = None) -> Path:
    """A 0700 temp dir named prefix + this process's owner tag: if hil is killed outright, the
    next hil's start-up sweep (hil/lab/sweep.py) sees its owner is gone and removes it."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner.tag()}.", dir=parent))
    path.chmod(0o700)
    return path


def monitor_args(path: Path | str, *, server: bool = False) -> list[str]:
    """The QMP monitor on a Unix socket: QEMU connects to hil's listening socket, or (server)
    listens itself, for a QEMU started by another program and adopted."""
    listen = ",server=on,wait=off" if server else ""
    return ["-chardev", f"socket,id=hilmon,path={path}{listen}", "-mon", "chardev=hilmon,mode=control"]


class ChildProcess:
    """A child this process did not start: L1's init started it and the agent, init's exec'd
    successor, inherited it. What Machine uses of subprocess.Popen."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:       # reaped elsewhere: gone, its status unknown
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


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
        self.qmp_path = self.run_dir / QMP_SOCKET
        self.output_log = log_dir / f"{name}-qemu.log"
        self.qmp_timeout = qmp_timeout
        self.proc: subprocess.Popen[bytes] | ChildProcess | None = None
        self.qmp: QEMUMonitorProtocol | None = None
        self._listener: socket.socket | None = None
        self._qemu_listens = False        # adopted: QEMU is the monitor socket's server
        self.started_at = 0.0

    @property
    def argv(self) -> list[str]:
        return self.base_argv + monitor_args(self.qmp_path, server=self._qemu_listens)

    # -- lifecycle -----------------------------------------------------------------
    def launch(self) -> None:
        self.spawn()
        self.attach()

    def spawn(self) -> None:
        """QEMU started, its monitor socket listened on; attach() takes the connection."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.qmp_path))
        self._listener.listen(1)
        out = open(self.output_log, "wb")
        try:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        except OSError as e:
            self.shutdown()
            raise LaunchError(f"{self.name}: cannot execute QEMU: {e}", self.argv, "", None) from e
        finally:
            out.close()

    def adopt(self, proc: ChildProcess) -> None:
        """A QEMU started by another program with this machine's argv, its monitor listening
        (monitor_args(qmp_path, server=True)); attach() connects to it."""
        self.proc, self._qemu_listens = proc, True
        self.started_at = time.monotonic()

    def attach(self) -> None:
        """The monitor's connection made (accepted, or to an adopted QEMU's socket) and QMP
        negotiated. A QEMU that exits first (a bad option, a missing file) ends the wait at
        once: launch errors carry its exit and output."""
        from qemu.qmp.legacy import QEMUMonitorProtocol
        assert self.proc is not None and (self._listener is not None or self._qemu_listens)
        deadline = time.monotonic() + self.qmp_timeout
        try:
            conn = self._connect(deadline) if self._qemu_listens else self._accept(deadline)
            self.qmp = QEMUMonitorProtocol(conn, nickname=self.name)
            self.qmp.connect()
            self.qmp.settimeout(self.qmp_timeout)   # no QMP command may hang the run
        except Exception as e:
            code = self.proc.poll()
            self.shutdown()
            raise LaunchError(f"{self.name}: QEMU did not come up on QMP ({type(e).__name__}: {e})",
                              self.argv, self.output(), code) from e
        finally:
            self._close_listener()

    def _accept(self, deadline: float) -> socket.socket:
        """QEMU's connection to our listening socket, once its greeting is there to read."""
        assert self.proc is not None and self._listener is not None
        self._await(self._listener, deadline)
        conn, _ = self._listener.accept()
        return self._greeted(conn, deadline)

    def _connect(self, deadline: float) -> socket.socket:
        """A connection to the adopted QEMU's own socket (retried until QEMU has made it), once
        its greeting is there to read."""
        while True:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(str(self.qmp_path))
                return self._greeted(conn, deadline)
            except (FileNotFoundError, ConnectionRefusedError):
                conn.close()
                if self.proc.poll() is not None:
                    raise LabError(f"QEMU exited (code {self.proc.returncode}) before it answered") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no monitor socket within {self.qmp_timeout:.0f} s") from None
                time.sleep(0.01)
            except BaseException:
                conn.close()
                raise

    def _greeted(self, conn: socket.socket, deadline: float) -> socket.socket:
        """conn once QEMU's greeting (or EOF: connect() reports it) is there to read: qemu.qmp's
        connect() has no timeout of its own, so it starts only when it cannot wait on a silent QEMU."""
        try:
            self._await(conn, deadline)
            return conn
        except BaseException:
            conn.close()
            raise

    def _await(self, sock: socket.socket, deadline: float) -> None:
        """Until sock is readable; raises when QEMU exits first or the deadline passes."""
        assert self.proc is not None
        try:
            if self.proc.poll() is not None:
                raise ProcessLookupError
            pidfd = os.pidfd_open(self.proc.pid)      # readable once QEMU has exited
        except ProcessLookupError:
            raise LabError(f"QEMU exited (code {self.proc.wait()}) before it answered") from None
        try:
            ready, _, _ = select.select([pidfd, sock], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(pidfd)
        if sock in ready:
            return
        if pidfd in ready or self.proc.poll() is not None:
            raise LabError(f"QEMU exited (code {self.proc.wait()}) before it answered")
        raise TimeoutError(f"no greeting within {self.qmp_timeout:.0f} s")

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

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
        except TimeoutError as e:       # asyncio's is this one since Python 3.11
            raise LabError(f"{self.name}: QMP command {name} got no answer within {self.qmp_timeout:.0f} s") from e
        except Exception as e:     # the monitor went away (QEMU died mid-command) or refused it
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
            self._close_listener()
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
