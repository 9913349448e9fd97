"""L2's QEMU started by a booting L1's init and adopted by the agent (issue 15, the boot path):
what L0 puts into fw_cfg, the agent waiting for init's modules, adopting that QEMU (a child it
did not start, its monitor QEMU's own socket) and the run using it. A fake QEMU (a QMP server)
and a fake fw_cfg tree; the real stack: tests/integration/test_snapshot.py::test_restore_equals_boot."""
import dataclasses
import gzip
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import hil.lab.run as lab_run
from hil.lab.agent import early, l2
from hil.lab.agent.protocol import L2Request
from hil.lab.devices import VfioPci
from hil.lab.errors import LabError
from hil.lab.request import Payload, build_request
from tests.unit.fakes import scenario
from tests.unit.lab.test_parked import FakeTrace

# QMP on the monitor socket of its command line, listening on it (server=on: as init starts
# QEMU) or connecting to it (as the agent launches QEMU): greets, answers every command with
# an empty return, exits after `quit`.
FAKE_QEMU = r"""
import json, os, socket, sys
spec = next(a for a in sys.argv if a.startswith("socket,id=hilmon,"))
path = spec.split("path=", 1)[1].split(",")[0]
if spec.endswith(",server=on,wait=off"):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    s, _ = srv.accept()
else:
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
def send(m):
    s.sendall(json.dumps(m).encode() + b"\r\n")
send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}})
buf, dec = "", json.JSONDecoder()
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk.decode()
    while buf.strip():      # QMP is a stream of JSON objects, not lines
        cmd, end = dec.raw_decode(buf.lstrip())
        buf = buf.lstrip()[end:]
        ret = {"paused": "-S" in sys.argv} if cmd["execute"] == "query-status" else {}
        send({"return": ret, **({"id": cmd["id"]} if "id" in cmd else {})})
        if cmd["execute"] == "quit":
            sys.exit(0)
"""


def probe_request(tmp_path: Path) -> tuple[L2Request, Payload]:
    probe = tmp_path / "probe.elf"
    probe.write_bytes(b"\x7fELF probe")
    return build_request(scenario("probe-basic", "topology.accel=tcg"),
                         SimpleNamespace(path=probe, window=(0x1000, 0x2000)))


def test_l0_puts_the_request_the_command_line_and_the_payload_into_fw_cfg(tmp_path):
    request, payload = probe_request(tmp_path)
    blobs = lab_run.boot_l2_fw_cfg(request, payload)
    assert L2Request.from_json(json.loads(blobs[early.BOOT_REQUEST])) == request
    words = blobs[early.BOOT_ARGV].decode().split("\n")
    assert words[-1] == "" and words[:len(request.argv) + 1] == request.argv + ["-S"]   # a word per line, paused
    assert words[-5:-1] == ["-chardev", "socket,id=hilmon,path=/run/hil/l2/qmp.sock,server=on,wait=off",
                            "-mon", "chardev=hilmon,mode=control"]                   # QEMU listens
    assert gzip.decompress(blobs[f"{early.BOOT_PAYLOAD}/kernel"]) == b"\x7fELF probe"   # init: /run/hil/payload/kernel
    assert set(blobs) == {early.BOOT_REQUEST, early.BOOT_ARGV, f"{early.BOOT_PAYLOAD}/kernel"}
    assert all(name.startswith("opt/") for name in blobs)          # QEMU's namespace for user files


def test_no_boot_request_for_devices_a_large_payload_or_a_word_with_a_newline(tmp_path):
    request, payload = probe_request(tmp_path)
    assert lab_run.boot_l2_fw_cfg(dataclasses.replace(request, devices=[VfioPci(model="edu")]), payload) == {}
    assert lab_run.boot_l2_fw_cfg(request, Payload(b"x" * (lab_run.BOOT_PAYLOAD_MAX + 1))) == {}
    assert lab_run.boot_l2_fw_cfg(dataclasses.replace(request, argv=request.argv + ["a\nb"]), payload) == {}


@pytest.fixture
def l1(tmp_path, monkeypatch):
    """early's fw_cfg tree and run dir; put(blobs) writes L0's fw_cfg files, init(argv) starts a
    child as init does (not through subprocess: the agent adopts it by its pid)."""
    monkeypatch.setattr(early, "FW_CFG", tmp_path / "fw_cfg")
    monkeypatch.setattr(early, "RUN_DIR", tmp_path / "run")

    def put(blobs: dict[str, bytes]) -> None:
        for name, data in blobs.items():
            (tmp_path / "fw_cfg" / name).mkdir(parents=True)
            (tmp_path / "fw_cfg" / name / "raw").write_bytes(data)

    def init(argv: list[str]) -> int:
        (tmp_path / "run/l2").mkdir(parents=True, exist_ok=True)
        pid = os.posix_spawn(argv[0], argv, dict(os.environ))
        (tmp_path / "run/l2" / early.BOOT_PID).write_text(f"{pid}\n")
        return pid
    return SimpleNamespace(put=put, init=init)


def fake_request(tmp_path: Path) -> L2Request:
    return L2Request(argv=[sys.executable, "-c", FAKE_QEMU], serial_log=str(tmp_path / "run/l2-serial.log"),
                     done_pattern="done", window=None)


def runner(tmp_path: Path) -> l2.L2Runner:
    r = l2.L2Runner.__new__(l2.L2Runner)
    r.run_dir, r.log_dir, r.optional, r.parked, r.trace = tmp_path / "run/l2", tmp_path / "run/logs", {}, None, FakeTrace()
    return r


def boot_argv_here(req: L2Request) -> list[str]:
    """early.boot_argv with the monitor in this test's run dir instead of L1's /run/hil."""
    return req.argv + ["-S"] + early.monitor_args(early.RUN_DIR / "l2" / early.QMP_SOCKET, server=True)


def test_the_agent_adopts_init_s_qemu_and_the_run_uses_it(l1, tmp_path):
    req = fake_request(tmp_path)
    l1.put({early.BOOT_REQUEST: json.dumps(req.to_json()).encode()})
    pid = l1.init(boot_argv_here(req))
    boot = early.adopt_boot_l2()
    assert boot is not None and boot.status() == {"started": True, "error": ""}
    assert boot.machine.proc.pid == pid and boot.machine.argv == boot_argv_here(req)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700

    r = runner(tmp_path)
    r.adopt_at_boot(req, boot.machine)
    assert r.parked.cleared == frozenset(r._triggers(req)[0])      # made in this boot: only checked
    machine, adopted = r._adopt_or_launch(req.argv, Path(req.serial_log))
    try:
        assert adopted and machine is boot.machine
        assert machine.command("query-status") == {"paused": True}    # attached (as a client) when adopted
    finally:
        machine.shutdown()
    assert machine.exitcode == 0                                     # it quit over QMP, and was reaped


def test_another_argv_at_the_run_shuts_init_s_qemu_down(l1, tmp_path):
    req = fake_request(tmp_path)
    l1.put({early.BOOT_REQUEST: json.dumps(req.to_json()).encode()})
    l1.init(boot_argv_here(req))
    boot = early.adopt_boot_l2()
    r = runner(tmp_path)
    r.adopt_at_boot(req, boot.machine)
    machine, adopted = r._adopt_or_launch(req.argv + ["-smp", "2"], Path(req.serial_log))
    try:
        assert not adopted and not boot.machine.is_running()
    finally:
        machine.shutdown()


def test_an_adopted_qemu_that_exits_before_its_monitor_is_a_launch_error_at_once(l1, tmp_path):
    req = dataclasses.replace(fake_request(tmp_path), argv=[sys.executable, "-c", "import sys; sys.exit(3)"])
    l1.put({early.BOOT_REQUEST: json.dumps(req.to_json()).encode()})
    l1.init(boot_argv_here(req))
    boot = early.adopt_boot_l2()
    t0 = time.monotonic()
    with pytest.raises(LabError, match="did not come up on QMP"):
        boot.machine.attach()
    assert time.monotonic() - t0 < 5 and boot.machine.exitcode == 3


def test_no_request_is_none_and_a_bad_one_is_reported_not_raised(l1):
    assert early.adopt_boot_l2() is None
    l1.put({early.BOOT_REQUEST: b"{not json"})
    boot = early.adopt_boot_l2()
    assert boot is not None and boot.machine is None
    assert boot.status()["started"] is False and "JSONDecodeError" in boot.status()["error"]


def test_the_agent_waits_for_init_s_modules_only_when_init_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv(early.MODULES_MARK_ENV, raising=False)
    early.wait_for_modules(timeout=0.01)                             # bare metal: nothing to wait for
    mark = tmp_path / "modules-loaded"
    monkeypatch.setenv(early.MODULES_MARK_ENV, str(mark))
    with pytest.raises(LabError, match="did not finish loading its modules"):
        early.wait_for_modules(timeout=0.05)
    threading.Timer(0.1, mark.touch).start()
    t0 = time.monotonic()
    early.wait_for_modules(timeout=5)
    assert 0.05 < time.monotonic() - t0 < 2


def test_the_agent_finds_its_virtio_port_by_name_else_the_second_uart(tmp_path, monkeypatch):
    monkeypatch.setattr(early, "VIRTIO_PORTS", tmp_path)
    assert early.agent_port("/dev/ttyS1") == "/dev/ttyS1"                 # a device is taken as it is
    assert early.agent_port("virtio:hil.agent") == "/dev/ttyS1"           # none yet
    for port, name in (("vport0p1", "other"), ("vport1p1", "hil.agent\n")):
        (tmp_path / port).mkdir()
        (tmp_path / port / "name").write_text(name)
    assert early.agent_port("virtio:hil.agent") == "/dev/vport1p1"
