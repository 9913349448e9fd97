"""A booted L1: its QEMU (run by Machine) and the JSON-lines channel to hil's agent inside."""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from hil.lab import owner, progress
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.qemu.machine import Machine, private_dir

log = logging.getLogger(__name__)


class AgentError(LabError):
    """The agent answered, with a failure: L1 is alive and can still be asked for its logs."""


class AgentChannel:
    def __init__(self, path: Path, machine: Machine):
        self.path = path
        self.machine = machine
        self.sock: socket.socket | None = None
        self.buf = b""
        self.next_id = 1

    def connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(self.path))
                self.sock = s
                return
            except OSError:
                s.close()
                if time.monotonic() > deadline or not self.machine.is_running():
                    raise LabError(f"cannot connect to the L1 agent socket {self.path} "
                                   f"(QEMU exit code {self.machine.exitcode})") from None
                time.sleep(0.05)

    def read_message(self, timeout: float) -> dict[str, Any]:
        """Next JSON line; raises LabError if L1 dies, hangs past timeout or sends garbage."""
        assert self.sock is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"L1 agent: no answer within {timeout:.0f} s")
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                if not self.machine.is_running():
                    raise LabError(f"L1 QEMU exited unexpectedly (exit code {self.machine.exitcode})") from None
                continue
            if not chunk:
                self.machine.wait(2.0)
                raise LabError(f"L1 agent channel closed (QEMU exit code {self.machine.exitcode})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            # Boot noise before the agent set the port raw; skip it.
            return {"event": "noise", "text": line.decode(errors="replace")}

    def request(self, cmd: str, args: dict[str, Any], timeout: float) -> Any:
        assert self.sock is not None
        rid = self.next_id
        self.next_id += 1
        self.sock.settimeout(timeout)   # a large payload drains at the emulated UART's pace
        self.sock.sendall(json.dumps({"id": rid, "cmd": cmd, "args": args}).encode() + b"\n")
        events = progress.OpEvents()
        while True:
            msg = self.read_message(timeout)
            if msg.get("event") == "progress":
                events.event(msg)
                continue
            if msg.get("id") != rid:
                continue
            if not msg.get("ok"):
                if msg.get("kind") == "capability":
                    raise CapabilityMissing(f"L1: {msg.get('error')}")
                raise AgentError(f"L1 agent {cmd} failed: {msg.get('error')}\n{msg.get('traceback', '')}")
            return msg["result"]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


#: Idle-L1 snapshots kept (~250-320 MB each), least recently used pruned first: `make test`
#: uses a dozen topologies and `make test-deep` eight more; with 16 kept a deep run evicted
#: most of the fast tier's, whose next run booted them again (6.6 min instead of 5).
SNAPSHOTS_KEPT = 24


@contextlib.contextmanager
def snapshot_lock(directory: Path, exclusive: bool) -> Iterator[None]:
    """Saving and pruning take it exclusively, a restore shares it: a prune never deletes the
    snapshot another run is loading."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wait_migration(machine: Machine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = machine.command("query-migrate").get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise LabError(f"L1 snapshot migration {status}: {machine.command('query-migrate')}")
        time.sleep(0.01)
    raise LabError(f"L1 snapshot migration did not finish within {timeout:.0f} s")


def info_path(snapshot: Path) -> Path:
    """The agent's host info beside its snapshot: a restore takes it from there instead of
    asking (a restored L1's first answer costs ~0.2 s: all its code is cold again for L0's
    TCG) and lets the run's own first request find out whether L1 answers."""
    return snapshot.with_name(snapshot.name + ".info.json")


def saved_info(snapshot: Path) -> dict[str, Any] | None:
    """The host info saved with the snapshot; None when missing or unreadable (L1 is asked)."""
    try:
        info = json.loads(info_path(snapshot).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "arch" in info else None


def save_info(snapshot: Path, info: Mapping[str, Any]) -> None:
    """Written beside and renamed (a cache file is never written in place: a private lab's are
    hard links), best effort: missing, the next restore asks L1 again. The temp file's name
    carries this process's owner tag: a killed hil's is swept by the next one."""
    tmp = snapshot.with_name(f".{snapshot.name}.info.{owner.tag()}")
    try:
        tmp.write_text(json.dumps({k: v for k, v in info.items() if k != "boot_l2"}))
        tmp.rename(info_path(snapshot))
    except OSError as e:
        log.debug("snapshot info not written: %s", e)
    finally:
        tmp.unlink(missing_ok=True)


def delete_snapshot(snapshot: Path) -> None:
    """A snapshot that does not restore, with its saved info."""
    snapshot.unlink(missing_ok=True)
    info_path(snapshot).unlink(missing_ok=True)


def publish_snapshot(tmp: Path, path: Path, kept: int, info: Mapping[str, Any] | None = None) -> None:
    """A migrated temp file made durable and renamed into place under the snapshot lock, with
    the agent's host info beside it; the directory then keeps only its `kept` most recently
    used snapshots (a restore touches its file). The temp file never outlives this."""
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        with snapshot_lock(path.parent, exclusive=True):
            tmp.rename(path)
            _fsync_dir(path.parent)
            save_info(path, info or {})
            for old in sorted(path.parent.glob("*.state"), key=lambda p: p.stat().st_mtime)[:-kept]:
                old.unlink(missing_ok=True)
            for sidecar in path.parent.glob("*.state.info.json"):    # theirs, and any a restore wrote late
                if not sidecar.with_name(sidecar.name.removesuffix(".info.json")).exists():
                    sidecar.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)


class Publishing:
    """publish_snapshot in a (non-daemon) thread: a stop signal in the main thread does not cut
    it short, and the interpreter waits for it at exit."""

    def __init__(self, tmp: Path, path: Path, kept: int, info: Mapping[str, Any] | None = None):
        self.path = path
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._publish, args=(tmp, path, kept, info), name="snapshot-publish")
        self._thread.start()

    def _publish(self, tmp: Path, path: Path, kept: int, info: Mapping[str, Any] | None) -> None:
        t0 = time.monotonic()
        try:
            publish_snapshot(tmp, path, kept, info)
        except BaseException as e:      # reported by join(): a snapshot is only a shortcut
            self.error = e
        self.seconds = time.monotonic() - t0

    def join(self) -> bool:
        """Wait for it; whether the snapshot is in place (a failure is logged, not raised)."""
        self._thread.join()
        if self.error is not None:
            log.warning("L1: snapshot %s not saved (%s)", self.path, self.error)
        return self.error is None


class L1Session:
    """Boot L1 with a given argv builder and talk to its agent. Logs go to log_dir and stay.

    With a snapshot path, a booted, idle L1 (agent up, nothing measured yet) is saved there
    once, and later sessions restore it instead of booting: the same command line plus
    '-incoming defer'. Restoring takes well under a second where a TCG boot takes seconds.
    """

    def __init__(self, build_argv: Any, *, log_dir: Path, boot_timeout: float, snapshot: Path | None = None,
                 fw_cfg: Mapping[str, bytes] | None = None):
        """fw_cfg: files L1 finds under /sys/firmware/qemu_fw_cfg/by_name at boot (name -> bytes;
        a booted L1 only: a restored one is the snapshot's, and repro.sh boots without them)."""
        self.log_dir = log_dir
        self.run_dir = private_dir("hil-l1-")
        self.console_log = log_dir / "l1-console.log"
        self.agent_socket = self.run_dir / "agent.sock"
        self.snapshot = snapshot
        self.restore = snapshot is not None and snapshot.exists()
        self.argv = build_argv(console_log=self.console_log, agent_socket=self.agent_socket)
        self.boot_argv = list(self.argv)   # what a fresh boot runs (a restore adds -incoming)
        if self.restore:
            self.argv += ["-incoming", "defer"]
        elif fw_cfg:
            self.argv += self._fw_cfg_args(fw_cfg)
        self.machine = Machine(self.argv, name="l1", log_dir=log_dir, run_dir=self.run_dir)
        self.channel = AgentChannel(self.agent_socket, self.machine)
        self.boot_timeout = boot_timeout
        self.info: dict[str, Any] = {}
        self.unconfirmed = False       # restored on its snapshot's saved info, L1 not heard from yet
        self.boot_seconds = 0.0
        self.phases: dict[str, float] = {}     # where the start's time went (launch, migrate, agent)

    def _fw_cfg_args(self, blobs: Mapping[str, bytes]) -> list[str]:
        args = []
        for i, (name, data) in enumerate(blobs.items()):
            path = self.run_dir / f"fw_cfg.{i}"         # private: the run dir is 0700
            path.write_bytes(data)
            args += ["-fw_cfg", f"name={name},file={str(path).replace(',', ',,')}"]
        return args

    def start(self) -> None:
        t0 = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.machine.launch()
        self.channel.connect(10.0)
        self.phases["launch"] = time.monotonic() - t0
        if self.restore:
            assert self.snapshot is not None
            log.debug("L1: restoring %s", self.snapshot)
            with snapshot_lock(self.snapshot.parent, exclusive=False):   # not pruned while QEMU reads it
                self.machine.command("migrate-incoming", uri=f"file:{self.snapshot}")
                wait_migration(self.machine, self.boot_timeout)
                with contextlib.suppress(OSError):
                    os.utime(self.snapshot)          # its mtime is its last use: the prune is LRU
            self.phases["migrate"] = time.monotonic() - t0 - self.phases["launch"]
            self.machine.command("cont")
            info = saved_info(self.snapshot)
            self.unconfirmed = info is not None
            if info is None:             # a snapshot saved before hil kept its info, or a torn file
                info = self.request("hello", timeout=self.boot_timeout)
                save_info(self.snapshot, info)
            self.info = info
        else:
            while True:
                msg = self.channel.read_message(self.boot_timeout)
                if msg.get("event") == "ready":
                    self.info = msg["info"]
                    break
            log.debug("L1 agent ready after %.1f s", time.monotonic() - t0)
            if self.snapshot is not None:
                log.info("L1: saving an idle snapshot for later runs")
                try:
                    self._save_snapshot(self.snapshot)
                except (LabError, OSError) as e:
                    if not self.machine.is_running():
                        raise
                    # the booted L1 is fine: a snapshot is only a shortcut (e.g. the disk is full)
                    log.warning("L1: no snapshot saved (%s); this run goes on with the booted L1", e)
        self.boot_seconds = time.monotonic() - t0
        self.phases["agent"] = self.boot_seconds - sum(self.phases.values())
        log.debug("L1 %s in %.2f s: %s", "restored" if self.restore else "booted", self.boot_seconds,
                  ", ".join(f"{k} {v:.3f} s" for k, v in self.phases.items()))

    def _save_snapshot(self, path: Path) -> None:
        """Migrate the idle L1 to a temp file named with this process's owner tag (a killed
        hil's is swept by the next one), fsync it, rename it into place, prune, all under the
        snapshot lock."""
        try:
            warm = self.request("warm_up", timeout=120.0)
            log.debug("L1 warmed up for its snapshot in %s s", warm.get("seconds"))
        except (AgentError, CapabilityMissing) as e:     # a shortcut only: the snapshot is saved without it
            log.warning("L1: no warm-up before its snapshot (%s)", str(e).splitlines()[0])
        tmp = self._migrate_stopped(path)
        try:
            publish_snapshot(tmp, path, SNAPSHOTS_KEPT, self.info)
        finally:
            if self.machine.is_running():
                self.machine.command("cont")

    def save_snapshot_behind(self, path: Path, kept: int) -> "Publishing":
        """Snapshot L1 as it is now into `path` with L1 stopped only while it migrates: the
        file's fsync, rename and prune run in a thread once L1 runs again; join it before the
        run ends. Kill-safe as _save_snapshot: the temp file is renamed or removed by that
        thread, or (hil killed outright) swept by the next hil."""
        tmp = self._migrate_stopped(path)
        try:
            if self.machine.is_running():
                self.machine.command("cont")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Publishing(tmp, path, kept, dict(self.info))

    def _migrate_stopped(self, path: Path) -> Path:
        """L1 stopped and migrated into a temp file beside `path` (named with this process's
        owner tag); L1 is left stopped. The temp file is removed and L1 let run if this fails."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{owner.tag()}")
        try:
            self.machine.command("stop")
            self.machine.command("migrate", uri=f"file:{tmp}")
            wait_migration(self.machine, 120.0)
            return tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            if self.machine.is_running():
                self.machine.command("cont")
            raise

    def request(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
        try:
            result = self.channel.request(cmd, args or {}, timeout)
        except (AgentError, CapabilityMissing):     # an answer all the same
            self.unconfirmed = False
            raise
        self.unconfirmed = False
        return result

    def distrust_saved_info(self) -> None:
        """The run broke before a restored L1 first answered: its snapshot's saved info is
        dropped (the next restore asks L1, and deletes a snapshot whose agent does not answer),
        unless L1's QEMU was killed (exit code 0 or negative) or stopped, which says nothing
        about the snapshot."""
        if not self.unconfirmed or self.snapshot is None:
            return
        code = self.machine.exitcode
        if code > 0 if code is not None else not self.machine.is_frozen():
            log.warning("L1: restored from %s, it never answered: its saved info dropped", self.snapshot)
            info_path(self.snapshot).unlink(missing_ok=True)

    def put_file(self, path: str, data: bytes) -> None:
        self.request("put_file", {"path": path, "data": base64.b64encode(data).decode()}, timeout=120.0)

    def close(self) -> None:
        # QEMU is told to quit, L1 is not powered off through its agent: L1 keeps nothing worth
        # a clean shutdown (an initramfs; its snapshot, if any, was saved before it ran
        # anything), and its shutdown under TCG took 0.2-0.5 s of every run.
        try:
            self.channel.close()
            self.machine.shutdown()
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> "L1Session":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
