"""Debian packages as build inputs: exact versions, downloads and extraction (argv only)."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path

from hil.lab.errors import LabError

log = logging.getLogger(__name__)

# Debian policy 5.6.1 and 5.6.12: a name cannot start with '-' (apt would read an option).
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+~:-]*")


def check_package(name: str) -> str:
    if not isinstance(name, str) or not _PACKAGE.fullmatch(name):
        raise LabError(f"{name!r} is not a Debian package name (lower-case letters, digits, + - .)")
    return name


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        # LC_ALL=C: apt translates what we parse ("Candidate:") on a non-English lab box
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired as e:
        raise LabError(f"command timed out after {timeout:.0f} s: {argv}") from e
    if proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {argv}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def apt_lists_stamp() -> str | None:
    """Changes when apt-get update rewrites the Packages lists (this lab's apt keeps no pkgcache.bin)."""
    from hil.lab.assets.cache import digest
    try:
        lists = sorted(p for p in Path("/var/lib/apt/lists").iterdir() if "_Packages" in p.name)
        return digest([[p.name, p.stat().st_mtime_ns, p.stat().st_size] for p in lists]) if lists else None
    except OSError:
        return None


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
    from hil.lab.assets.cache import cache_root, read_json_memo, write_json_atomic
    check_package(package)
    try:
        st = os.stat("/var/cache/apt/pkgcache.bin")
        stamp = f"{st.st_mtime_ns}-{st.st_size}"
    except OSError:
        stamp = None
    memo = cache_root() / "apt-candidates.json"
    known: dict[str, str] = {}
    if stamp:
        data = read_json_memo(memo)          # missing, truncated or foreign: a miss
        if isinstance(data, dict) and data.get("stamp") == stamp and isinstance(data.get("versions"), dict):
            known = {k: v for k, v in data["versions"].items() if isinstance(k, str) and isinstance(v, str)}
    if package in known and _VERSION.fullmatch(known[package]):
        return known[package]
    version = _ask_candidate(package)
    if stamp:
        known[package] = version
        try:
            write_json_atomic(memo, {"stamp": stamp, "versions": known})
        except OSError:
            pass      # a read-only or full cache: only the next run pays for asking apt again
    return version


def _ask_candidate(package: str) -> str:
    out = _run(["apt-cache", "policy", package], timeout=120)
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)" and _VERSION.fullmatch(version):
                return version
    raise LabError(f"Debian package {package!r} is not known to apt (run 'apt-get update'?)")


def download(package: str, version: str, dest: Path) -> Path:
    """Download package=version into dest and return the .deb path."""
    check_package(package)
    if not _VERSION.fullmatch(version):
        raise LabError(f"{version!r} is not a Debian version")
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log.info("apt-get download %s=%s", package, version)
    _download(package, version, dest)
    log.info("downloaded %s=%s in %.0f s", package, version, time.monotonic() - t0)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise LabError(f"apt-get download {package}={version} produced no .deb in {dest}")
    return debs[-1]


def _download(package: str, version: str, dest: Path) -> None:
    """apt-get download with its machine-readable status on stdout (no terminal needed):
    the percentage goes to hil/lab/progress.py as it comes."""
    from hil.lab import procs, progress
    argv = ["apt-get", "-o", "APT::Status-Fd=1", "download", f"{package}={version}"]
    try:
        proc = procs.run(argv, capture_output=True, text=True, timeout=3600, cwd=dest,
                         env=dict(os.environ, LC_ALL="C"),
                         watcher=progress.AptStatus(f"apt-get download {package}"))
    except subprocess.TimeoutExpired as e:
        raise LabError(f"command timed out after 3600 s: {argv}") from e
    if proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {argv}\n{proc.stdout}{proc.stderr}")


def extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)], timeout=1800)
