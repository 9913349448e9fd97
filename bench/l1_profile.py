"""Where the time goes inside L1 (TCG-emulated): boots the scenario's L1 image by hand with an
extra initrd segment whose /baseline.sh, instead of the agent, prints (on L1's console)
  - the agent's import times (python -X importtime, the slowest modules),
  - the L2 run of the scenario's own agent request under cProfile (the slowest calls),
  - the same run again, warm (what a second run on the same L1 costs),
  - QEMU's own start-up in L1: --version (loading and linking it), and a paused microvm
    under KVM told to quit at once (machine and KVM VM set-up).
Nothing is measured against a target: a profile for the README's floor analysis.

    python bench/l1_profile.py [--scenario probe-basic] [--top 25]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil.lab.assets.cpio import write_cpio  # noqa: E402
from hil.lab.qemu.argv import L2Paths  # noqa: E402
from hil.lab.request import build_request  # noqa: E402
from hil.lab.run import l1_builder, prepare  # noqa: E402
from hil.paths import ROOT as HIL_ROOT  # noqa: E402
from hil.scenario import load_scenario  # noqa: E402

PROFILE = r'''
import cProfile, io, json, pstats, sys, time
t0 = time.monotonic()
from hil.lab.agent.service import Agent, host_info
from hil.lab.agent.l2 import L2Runner
from hil.lab.agent.protocol import L2Request
print(f"hil-profile: agent imports {time.monotonic() - t0:.3f} s", flush=True)
t = time.monotonic(); host_info(); print(f"hil-profile: host_info {time.monotonic() - t:.3f} s", flush=True)
req = L2Request.from_json(json.load(open("/req.json")))
t = time.monotonic(); runner = L2Runner(__import__("pathlib").Path("/run/hil/l2"), __import__("pathlib").Path("/run/hil/logs"))
print(f"hil-profile: L2Runner (hist triggers) {time.monotonic() - t:.3f} s", flush=True)
import os, traceback
os.makedirs("/run/hil/l2", exist_ok=True)
os.makedirs("/run/hil/logs", exist_ok=True)
class Sequential:
    """Stands in for the agent's thread pool: each clear runs at submit, before QEMU starts (the old order)."""
    def __init__(self, **kw):
        pass

    def submit(self, fn, *args):
        from concurrent.futures import Future
        f = Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True):
        pass


import hil.lab.agent.l2 as l2mod
concurrent_pool = l2mod.ThreadPoolExecutor
labels = ["first", "second"] + (["sequential", "concurrent", "sequential", "concurrent"] if sys.argv[2:] == ["ab"] else [])
for label in labels:
    l2mod.ThreadPoolExecutor = Sequential if label == "sequential" else concurrent_pool
    prof = cProfile.Profile()
    t = time.monotonic()
    prof.enable()
    try:
        res = runner.run(req)
    except Exception:
        for line in traceback.format_exc().splitlines():
            print("hil-profile:", line, flush=True)
        raise
    prof.disable()
    wall = time.monotonic() - t
    t = time.monotonic(); blob = json.dumps(res.to_json()); enc = time.monotonic() - t
    print(f"hil-profile: run_l2 {label} {wall:.3f} s timings {json.dumps({k: round(v, 3) for k, v in res.timings.items()})} "
          f"ended_by {res.ended_by} result {len(blob)} bytes encoded in {enc:.3f} s", flush=True)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(int(sys.argv[1]))
    for line in out.getvalue().splitlines() if label in ("first", "second") else ():
        if line.strip():
            print("hil-profile:", line, flush=True)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="probe-basic")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--ab", action="store_true", help="then alternate the hist clears: before QEMU starts vs while it starts")
    ap.add_argument("--keep-console", metavar="FILE", help="copy L1's whole console log there")
    args = ap.parse_args()
    sc = load_scenario(args.scenario, root=HIL_ROOT)
    prep = prepare(sc.topology, sc.workload.kind == "probe", "tcg")
    req, payload = build_request(sc, prep.probe)
    with tempfile.TemporaryDirectory(prefix="hil-l1prof-") as tmp:
        work = Path(tmp)
        seg = work / "seg"
        seg.mkdir()
        (seg / "payload-kernel").write_bytes(payload.kernel)     # /run is a tmpfs by then: copied there
        (seg / "req.json").write_text(json.dumps(req.to_json()))
        (seg / "hil_l1_profile.py").write_text(PROFILE)
        script = seg / "baseline.sh"
        script.write_text("#!/bin/sh\nexport PYTHONPATH=/opt/hil/lib PYTHONDONTWRITEBYTECODE=1\n"
                          f"mkdir -p {Path(L2Paths.kernel).parent} && cp /payload-kernel {L2Paths.kernel}\n"
                          "python3 -X importtime -c 'import hil.lab.agent.service' 2>/tmp/imp\n"
                          "t() { s=$(cut -d' ' -f1 /proc/uptime); \"$@\" >/dev/null 2>&1; "
                          "e=$(cut -d' ' -f1 /proc/uptime); echo \"hil-profile: $s -> $e: $*\"; }\n"
                          "t /usr/bin/qemu-system-x86_64 --version\n"
                          "t /usr/bin/qemu-system-x86_64 --version\n"
                          "echo quit > /tmp/quit\n"
                          "t sh -c '/usr/bin/qemu-system-x86_64 -nodefaults -display none -machine microvm "
                          "-accel kvm -cpu host -m 64 -S -monitor stdio < /tmp/quit'\n"
                          "t sh -c '/usr/bin/qemu-system-x86_64 -nodefaults -display none -machine microvm "
                          "-accel kvm -cpu host -m 64 -S -monitor stdio < /tmp/quit'\n"
                          "t sh -c '/usr/bin/qemu-system-x86_64 -nodefaults -display none -machine none "
                          "-S -monitor stdio < /tmp/quit'\n"
                          f"sort -t'|' -k2 -n /tmp/imp | tail -{args.top} | sed 's/^/hil-profile: /'\n"
                          f"python3 /hil_l1_profile.py {args.top} {'ab' if args.ab else ''} 2>&1 | sed 's/^/hil-profile: /'\n")
        script.chmod(0o755)
        write_cpio(seg, work / "seg.cpio")
        combined = work / "initrd.cpio"
        with open(combined, "wb") as f:
            f.write(prep.image.initrd.read_bytes())
            f.write((work / "seg.cpio").read_bytes())
        console = work / "console.log"
        argv = l1_builder(sc.topology, prep.image, "tcg")(console_log=console, agent_socket=work / "agent.sock")
        argv[argv.index("-initrd") + 1] = str(combined)
        subprocess.run(argv, check=True, capture_output=True, timeout=900)
        text = console.read_text(errors="replace")
        if args.keep_console:
            Path(args.keep_console).write_text(text)
        lines = [l.split("hil-profile: ", 1)[1] for l in text.splitlines() if "hil-profile: " in l]
        print("\n".join(lines) if lines else text[-4000:])
        print(f"host load: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
