"""A lab fleet through LAVA: `hil lava job` emits a LAVA job definition that deploys the lab
box's kernel, boots it, and runs an inline test definition which installs hil and runs a
batch with `hil run --host` (L1 = the box itself, its KVM the one under test); `hil lava
results OUT` (run inside that test) reports every case with `lava-test-case` and puts
result.json into the log (and onto an artifact server when one is given).

Device types: `qemu` (LAVA's QEMU device: the DUT is a VM on the worker, which needs nested
KVM; good for trying a job) and `x86` (a real Intel or AMD box: tftp + iPXE + NFS root, the
device-type templates in docs/lava/)."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DEVICE_TYPES = ("qemu", "x86")
DEFAULT_REPO = "https://github.com/hil-project/hil.git"
PROMPTS = ["root@", "/ #", "# "]
_NAME = re.compile(r"[^-_a-zA-Z0-9.]")


def test_definition(group: str, repo: str, branch: str, kernel: str | None, artifact_url: str | None) -> dict[str, Any]:
    """The inline Lava-Test Test Definition 1.0 that runs on the booted box."""
    run = ["hil", "run", "--host", "--group", group, "--out", "/tmp/hil-out"]
    if kernel:
        run += ["--kernel", kernel]
    steps = [
        "export PATH=/opt/hil/.venv/bin:$PATH",
        # the batch's exit code is the verdict's (1 FAIL, 2 ERROR): results carry it, not the step
        " ".join(run) + " || echo \"hil run exit code $?\"",
        "hil lava results /tmp/hil-out" + (f" --artifact-url {artifact_url}" if artifact_url else ""),
    ]
    return {
        "metadata": {"format": "Lava-Test Test Definition 1.0", "name": f"hil-{group}",
                     "description": f"hil scenarios of group {group} on this box's own KVM (hil run --host)",
                     "os": ["debian"], "scope": ["functional"]},
        "install": {
            "deps": ["git", "python3", "python3-venv", "qemu-system-x86", "busybox-static", "kmod", "gcc", "make",
                     "curl"],
            "steps": [f"git clone --depth 1 --branch {branch} {repo} /opt/hil",
                      "python3 -m venv /opt/hil/.venv", "/opt/hil/.venv/bin/pip install -q -e /opt/hil"],
        },
        "run": {"steps": steps},
    }


def job(device_type: str, *, group: str = "smoke", kernel_url: str, ramdisk_url: str | None = None,
        rootfs_url: str | None = None, repo: str = DEFAULT_REPO, branch: str = "main", kernel: str | None = None,
        artifact_url: str | None = None, timeout_minutes: int = 120, tags: list[str] | None = None,
        job_name: str | None = None) -> dict[str, Any]:
    """A LAVA job definition (a dict: yaml.safe_dump it for lavacli or the web UI)."""
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"device type {device_type!r}: expected one of {', '.join(DEVICE_TYPES)}")
    test = {"test": {"timeout": {"minutes": max(1, timeout_minutes - 20)},
                     "definitions": [{"from": "inline", "name": f"hil-{group}", "path": "inline/hil.yaml",
                                      "repository": test_definition(group, repo, branch, kernel, artifact_url)}]}}
    if device_type == "qemu":
        images: dict[str, Any] = {"kernel": {"image_arg": "-kernel {kernel}", "url": kernel_url}}
        if ramdisk_url:
            images["initrd"] = {"image_arg": "-initrd {initrd}", "url": ramdisk_url}
        if rootfs_url:
            images["rootfs"] = {"image_arg": "-drive format=raw,file={rootfs}", "url": rootfs_url}
        actions = [
            {"deploy": {"to": "tmpfs", "timeout": {"minutes": 10}, "os": "debian", "images": images}},
            {"boot": {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": 5}, "prompts": PROMPTS,
                      "auto_login": {"login_prompt": "login:", "username": "root"}}},
            test,
        ]
        # the VM is L1: it needs the worker's KVM with nesting, and a CPU that shows VMX/SVM
        context: dict[str, Any] = {"arch": "amd64", "cpu": "host", "memory": 4096,
                                   "extra_options": ["-smp 4", "-append 'console=ttyS0 root=/dev/vda rw'"]}
    else:
        deploy: dict[str, Any] = {"to": "tftp", "timeout": {"minutes": 10}, "os": "debian",
                                  "kernel": {"url": kernel_url}}
        if ramdisk_url:
            deploy["ramdisk"] = {"url": ramdisk_url, "compression": "gz"}
        if rootfs_url:
            deploy["nfsrootfs"] = {"url": rootfs_url, "compression": "xz"}
        actions = [
            {"deploy": deploy},
            {"boot": {"method": "ipxe", "commands": "nfs", "timeout": {"minutes": 10}, "prompts": PROMPTS,
                      "auto_login": {"login_prompt": "login:", "username": "root"}}},
            test,
        ]
        context = {"extra_kernel_args": "kvm_amd.nested=1 kvm_intel.nested=1"}
    doc: dict[str, Any] = {
        "job_name": job_name or f"hil {group} on {device_type}" + (f" ({kernel})" if kernel else ""),
        "device_type": device_type,
        "visibility": "public",
        "priority": "medium",
        "timeouts": {"job": {"minutes": timeout_minutes}, "action": {"minutes": 10},
                     "connection": {"minutes": 2}},
        "context": context,
        "metadata": {"hil.group": group, "hil.kernel": kernel or "topology default", "hil.branch": branch},
        "actions": actions,
    }
    if tags:
        doc["tags"] = list(tags)
    return doc


# -- inside the test: results -> lava-test-case ------------------------------------------------
LAVA_RESULT = {"PASS": "pass", "FAIL": "fail", "ERROR": "fail", "SKIP": "skip", "FLAKY": "fail"}


def case_name(*parts: str) -> str:
    """LAVA test case names allow [-_a-zA-Z0-9.] only."""
    return ".".join(_NAME.sub("_", p) for p in parts if p)


def test_case_calls(index: dict[str, Any], out: Path) -> list[list[str]]:
    """argv of every lava-test-case call for a batch output tree: one per case (measurement:
    the exits it measured, summed over its reasons) and one per judged reason."""
    calls: list[list[str]] = []
    for sc in index.get("scenarios", []):
        for i, run in enumerate(sc.get("runs", []), 1):
            path = out / run["dir"] / "result.json"
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                calls.append(["lava-test-case", case_name(sc["name"], f"r{i}" if len(sc["runs"]) > 1 else ""),
                              "--result", "fail"])
                continue
            rep = f"r{i}" if len(sc["runs"]) > 1 else ""
            for case in result.get("cases", []):
                rows = case.get("rows", [])
                argv = ["lava-test-case", case_name(sc["name"], rep, case["name"]),
                        "--result", LAVA_RESULT.get(case.get("verdict", ""), "unknown")]
                if rows:
                    argv += ["--measurement", str(sum(int(r.get("measured", 0)) for r in rows)), "--units", "exits"]
                calls.append(argv)
                for name, cycles in sorted(case.get("extra", {}).get("cycles", {}).items()):   # kut vmexit.flat
                    calls.append(["lava-test-case", case_name(sc["name"], rep, "cycles", name), "--result", "pass",
                                  "--measurement", str(int(cycles)), "--units", "cycles"])
                for r in rows:
                    if r.get("judged", True):
                        calls.append(["lava-test-case", case_name(sc["name"], rep, case["name"], r["reason"]),
                                      "--result", "pass" if r.get("ok") else "fail",
                                      "--measurement", str(int(r.get("measured", 0))), "--units", "exits"])
        for case, info in sc.get("flaky", {}).items():
            calls.append(["lava-test-case", case_name(sc["name"], case, "flaky"), "--result", "fail"])
    return calls


def report(out: Path, artifact_url: str | None = None,
           call: Callable[[list[str]], int] = lambda argv: subprocess.run(argv).returncode) -> int:
    index = json.loads((out / "index.json").read_text())
    for argv in test_case_calls(index, out):
        call(argv)
    # result.json into the job log (LAVA keeps it with the job), and onto the artifact server
    for sc in index.get("scenarios", []):
        for run in sc.get("runs", []):
            path = out / run["dir"] / "result.json"
            if path.exists():
                print(f"--- hil result {run['dir']}/result.json ---\n{path.read_text()}\n--- end ---", flush=True)
                if artifact_url:
                    name = case_name(run["dir"].replace("/", "."), "result.json")
                    if call(["curl", "-sSf", "-T", str(path), f"{artifact_url.rstrip('/')}/{name}"]) == 0:
                        call(["lava-test-reference", name, "--result", "pass", "--reference",
                              f"{artifact_url.rstrip('/')}/{name}"])
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hil lava", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("job", help="print a LAVA job definition (YAML)")
    j.add_argument("--device-type", choices=DEVICE_TYPES, required=True)
    j.add_argument("--group", default="smoke", help="the scenario group the box runs (default smoke)")
    j.add_argument("--kernel-url", required=True, help="the lab box's kernel (stock or a series' bzImage)")
    j.add_argument("--ramdisk-url")
    j.add_argument("--rootfs-url", help="a Debian root file system (qemu: raw image; x86: NFS tarball)")
    j.add_argument("--kernel", metavar="SERIES", help="hil run --kernel SERIES on the box")
    j.add_argument("--repo", default=DEFAULT_REPO, help="git URL hil is installed from")
    j.add_argument("--branch", default="main")
    j.add_argument("--artifact-url", help="upload each result.json here (curl -T) and reference it")
    j.add_argument("--timeout", type=int, default=120, metavar="MINUTES")
    j.add_argument("--tag", action="append", default=[], help="a device tag, e.g. vmx or svm")
    j.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    r = sub.add_parser("results", help="inside a LAVA test: report a batch output tree with lava-test-case")
    r.add_argument("out", type=Path)
    r.add_argument("--artifact-url")
    args = p.parse_args(argv)
    if args.cmd == "results":
        if shutil.which("lava-test-case") is None:
            print("hil lava results: lava-test-case is not on PATH (run inside a LAVA test shell)", file=sys.stderr)
            return 2
        try:
            return report(args.out, args.artifact_url)
        except (OSError, ValueError) as e:
            print(f"hil lava results: {args.out}/index.json: {e}", file=sys.stderr)
            return 2
    text = yaml.safe_dump(job(args.device_type, group=args.group, kernel_url=args.kernel_url,
                              ramdisk_url=args.ramdisk_url, rootfs_url=args.rootfs_url, repo=args.repo,
                              branch=args.branch, kernel=args.kernel, artifact_url=args.artifact_url,
                              timeout_minutes=args.timeout, tags=args.tag), sort_keys=False)
    if args.output:
        args.output.write_text(text)
    else:
        print(text, end="")
    return 0
