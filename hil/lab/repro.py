"""repro.sh: a standalone reproducer of one run, in the manner of kvm-unit-tests' standalone
scripts: the exact L1 command line, and the agent requests that made L1 run L2."""
from __future__ import annotations

import base64
import json
import re
import shlex
from pathlib import Path
from typing import Any

from hil.lab.errors import LabError
from hil.lab.l1 import L1Session

REPRO_CLIENT = """import json, socket, sys, time
reqs = [json.loads(l) for l in open(sys.argv[1])]
s = socket.socket(socket.AF_UNIX)
for _ in range(600):
    try:
        s.connect("agent.sock"); break
    except OSError:
        time.sleep(0.1)
f = s.makefile("rwb")
for req in reqs:
    f.write(json.dumps(req).encode() + b"\\n"); f.flush()
    if req["cmd"] == "poweroff":
        f.read()   # hold the socket open until QEMU exits: closing early can drop the request
    while req["cmd"] != "poweroff":
        msg = json.loads(f.readline())
        if msg.get("id") == req["id"]:
            r = msg.get("result") or msg
            print(json.dumps({k: v for k, v in r.items() if k != "serial"}))
            print(r.get("serial", ""))
            break
"""


def write_repro(out_dir: Path, l1: L1Session, request: dict[str, Any], payloads: dict[str, bytes]) -> Path:
    """A standalone reproducer: boots the same L1 (booted, not restored) in a fresh private
    directory and sends the agent the same requests, printing what it measures.

    Every argument reaches the shell through shlex.quote only (a newline stays inside its
    quotes), and the human-readable comment shows control characters escaped, so no
    argument, whatever it holds, can become a command of its own."""
    run = str(l1.run_dir) + "/"
    argv = [a.replace(run, "") for a in l1.boot_argv]          # the socket becomes ./agent.sock
    argv = ["file,id=console,path=l1-console.log" if a.startswith("file,id=console,path=") else a for a in argv]
    for a in [*argv, *request["argv"]]:
        if not isinstance(a, str) or "\0" in a:     # exec cannot pass it; the shell would mangle it
            raise LabError(f"repro.sh: argument {a!r} cannot be passed to a program")
    reqs = [{"id": i + 1, "cmd": "put_file", "args": {"path": p, "data": base64.b64encode(d).decode()}}
            for i, (p, d) in enumerate(payloads.items())]
    reqs += [{"id": len(reqs) + 1, "cmd": "run_l2", "args": request}, {"id": len(reqs) + 2, "cmd": "poweroff"}]
    (out_dir / "repro-requests.jsonl").write_text("".join(json_line(r) + "\n" for r in reqs))
    (out_dir / "repro-client.py").write_text(REPRO_CLIENT)
    lines = [
        "#!/bin/sh",
        "# Reproduce this hil run by hand: L0 boots L1 with exactly hil's command line; hil's",
        "# agent in L1 then runs L2 with this command line (the requests are in repro-requests.jsonl):",
        "#   " + comment_text(shlex.join(request["argv"])),
        "set -eu",
        'HERE=$(cd "$(dirname "$0")" && pwd)',
        'RUN=$(mktemp -d)',
        'trap \'rm -rf "$RUN"\' EXIT',
        'cd "$RUN"',
        shlex.join(argv) + " &",
        'python3 "$HERE/repro-client.py" "$HERE/repro-requests.jsonl"',
        "wait",
        'echo "L1 console: $RUN/l1-console.log (removed on exit; copy it first if needed)"',
    ]
    path = out_dir / "repro.sh"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def comment_text(text: str) -> str:
    """Text for one comment line: control characters (a newline would end the comment and
    start a command; a carriage return would hide text on a terminal) are shown escaped."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def json_line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
