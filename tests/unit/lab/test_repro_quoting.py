"""repro.sh cannot be turned into a command by an argument (review S1): hostile L1 and L2
arguments are written, `sh -n` accepts the script, and running it against a fake QEMU (which
serves the agent socket) shows the fake received every argument byte for byte while none of
the injected commands ran."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.lab.errors import LabError
from hil.lab.repro import comment_text, write_repro

FAKE_QEMU = r'''#!PYTHON
"""Fake qemu-system-x86_64: records its argv, serves the agent socket in the cwd until poweroff."""
import json, os, socket, sys
with open(os.environ["FAKE_LOG"], "w") as f:
    json.dump(sys.argv[1:], f)
srv = socket.socket(socket.AF_UNIX)
srv.bind("agent.sock")
srv.listen(1)
srv.settimeout(30)
conn, _ = srv.accept()
rf = conn.makefile("rb")
seen = []
for line in rf:
    req = json.loads(line)
    seen.append(req)
    if req["cmd"] == "poweroff":
        break
    conn.sendall(json.dumps({"id": req["id"], "result": {"ok": True, "serial": "fake serial"}}).encode() + b"\n")
with open(os.environ["FAKE_LOG"] + ".requests", "w") as f:
    json.dump(seen, f)
conn.close()
'''


def hostile(canaries: Path) -> list[str]:
    c = canaries
    return [
        f"x\ntouch {c}/nl #", f"$(touch {c}/subst)", f"`touch {c}/backtick`", f"; touch {c}/semi",
        f"a' ; touch {c}/quote ; '", f"\"; touch {c}/dq; \"", f"x\r\ntouch {c}/crlf", "\\", "", " ", "-",
        f"x\u2028touch {c}/ls", "*", "~", "$HOME", "a\tb", "é",
    ]


@pytest.fixture
def repro(tmp_path):
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    run_dir = tmp_path / "run"
    out = tmp_path / "out"
    out.mkdir()
    l1_args = ["qemu-system-x86_64", "-chardev", f"socket,id=agent,path={run_dir}/agent.sock,server=on,wait=off",
               "-chardev", f"file,id=console,path={run_dir}/l1-console.log", "-name", *hostile(canaries)]
    l2_argv = ["qemu-system-x86_64", "-name", *hostile(canaries)]
    l1 = SimpleNamespace(run_dir=run_dir, boot_argv=l1_args)
    path = write_repro(out, l1, {"argv": l2_argv, "serial_log": "/run/hil/l2-serial.log"},
                       {"/run/hil/payload/kernel": b"\x7fELF"})
    return SimpleNamespace(path=path, out=out, canaries=canaries, l1_args=l1_args, l2_argv=l2_argv, tmp=tmp_path)


def test_repro_is_valid_sh_and_comments_hold_no_newline(repro):
    assert subprocess.run(["sh", "-n", str(repro.path)], capture_output=True).returncode == 0
    text = repro.path.read_text()
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("#   "))
    assert "\\n" in lines[at] and "\\r" in lines[at] and "\\u2028" in lines[at]
    assert lines[at + 1] == "set -eu"        # the L2 command line stayed one comment line


def test_running_repro_executes_nothing_injected(repro):
    if shutil.which("sh") is None:
        pytest.skip("no sh")
    fake_bin = repro.tmp / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "qemu-system-x86_64"
    fake.write_text(FAKE_QEMU.replace("PYTHON", sys.executable))
    fake.chmod(0o755)
    log = repro.tmp / "fake-argv.json"
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}", FAKE_LOG=str(log))
    # The script runs from another cwd so a relative injected path would land there: check it too.
    cwd = repro.tmp / "cwd"
    cwd.mkdir()
    proc = subprocess.run(["sh", str(repro.path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert list(repro.canaries.iterdir()) == [] and list(cwd.iterdir()) == []
    expected = [a.replace(f"{repro.tmp}/run/", "") for a in repro.l1_args[1:]]
    expected = ["file,id=console,path=l1-console.log" if a.startswith("file,id=console,path=") else a
                for a in expected]
    assert json.loads(log.read_text()) == expected          # byte for byte, newlines included
    requests = json.loads(Path(str(log) + ".requests").read_text())
    assert [r["cmd"] for r in requests] == ["put_file", "run_l2", "poweroff"]
    assert requests[1]["args"]["argv"] == repro.l2_argv
    assert "fake serial" in proc.stdout


def test_nul_in_an_argument_is_refused(tmp_path):
    l1 = SimpleNamespace(run_dir=tmp_path / "run", boot_argv=["qemu-system-x86_64"])
    with pytest.raises(LabError, match="cannot be passed"):
        write_repro(tmp_path, l1, {"argv": ["qemu", "a\0b"]}, {})


def test_comment_text_escapes_controls():
    assert comment_text("a\nb\rc\x1b[0m") == "a\\nb\\rc\\x1b[0m"
    assert comment_text("plain 'quoted' é") == "plain 'quoted' é"
