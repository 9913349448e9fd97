"""Debian packages as build inputs: exact versions, downloads and extraction (argv only)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from hil.lab.errors import LabError


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {argv}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def installed_version(package: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def owning_package(path: str) -> str | None:
    proc = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.split(":", 1)[0].strip()


def candidate_version(package: str) -> str:
    """The version apt would download now (so a new upload changes the cache key)."""
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
