"""Debian packages as build inputs: exact versions, downloads and extraction (argv only)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from hil.lab.errors import LabError


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {argv}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def installed_versions(packages: list[str]) -> dict[str, str]:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *packages],
                          capture_output=True, text=True)
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def owning_packages(paths: list[str]) -> dict[str, str]:
    """path -> Debian package, in one dpkg-query call (paths dpkg doesn't know are left out)."""
    proc = subprocess.run(["dpkg-query", "-S", *paths], capture_output=True, text=True)
    owners: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if ": " in line:
            pkgs, path = line.split(": ", 1)
            owners[path.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    return owners


def candidate_version(package: str) -> str:
    """The version apt would download now (so a new upload changes the cache key). Memoised
    until apt's package cache changes, since asking apt costs a few tenths of a second."""
    from hil.lab.assets.cache import cache_root
    try:
        st = os.stat("/var/cache/apt/pkgcache.bin")
        stamp = f"{st.st_mtime_ns}-{st.st_size}"
    except OSError:
        stamp = None
    memo = cache_root() / "apt-candidates.json"
    known: dict[str, str] = {}
    if stamp and memo.exists():
        data = json.loads(memo.read_text())
        if data.get("stamp") == stamp:
            known = data["versions"]
    if package in known:
        return known[package]
    version = _ask_candidate(package)
    if stamp:
        known[package] = version
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"stamp": stamp, "versions": known}))
    return version


def _ask_candidate(package: str) -> str:
    out = _run(["apt-cache", "policy", package])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                return version
    raise LabError(f"Debian package {package!r} is not known to apt (run 'apt-get update'?)")


def download(package: str, version: str, dest: Path) -> Path:
    """Download package=version into dest and return the .deb path."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", f"{package}={version}"], cwd=dest)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise LabError(f"apt-get download {package}={version} produced no .deb in {dest}")
    return debs[-1]


def extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
