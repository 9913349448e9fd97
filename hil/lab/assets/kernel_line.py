"""Kernel *lines* from a moving archive: `debian:linux-image-6.1` names Debian's 6.1 line and
resolves, at run time, to the newest ABI package apt has (linux-image-6.1.0-57-amd64 today,
-58 tomorrow); `debian:linux-image-6.1.0-57-amd64` pins the ABI, `...=6.1.192-3` the upload.
Security uploads drop old ABIs from the archive, so topologies name lines and the exact
package and version go into provenance and the image cache key."""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from hil.lab.errors import LabError

FLAVOUR = "amd64"
_LINE = re.compile(r"linux-image-([0-9]+\.[0-9]+)")
_EXACT = re.compile(r"linux-image-([0-9]+\.[0-9]+)[0-9A-Za-z.+~-]*")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+~:-]*")

# (argv) -> stdout: the one seam the unit tests replace with a fake apt
AptRun = Callable[[list[str]], str]


@dataclass(frozen=True)
class KernelSpec:
    line: str                  # "6.1"
    package: str | None        # an exact ABI package the user asked for, else None
    version: str | None        # an exact upload the user asked for, else None

    @property
    def text(self) -> str:
        name = self.package or f"linux-image-{self.line}"
        return f"debian:{name}" + (f"={self.version}" if self.version else "")


@dataclass(frozen=True)
class Resolved:
    package: str               # linux-image-6.1.0-57-amd64
    version: str               # 6.1.192-3
    line: str
    spec: str                  # what the topology said

    @property
    def headers_package(self) -> str:
        return "linux-headers-" + self.package.removeprefix("linux-image-")

    @property
    def release(self) -> str:  # Debian names the package after `uname -r`
        return self.package.removeprefix("linux-image-")


def parse_spec(spec: str) -> KernelSpec:
    """'debian:linux-image-6.1' (a line), 'debian:<ABI package>' or 'debian:<ABI package>=<version>'."""
    if not isinstance(spec, str) or not spec.startswith("debian:"):
        raise LabError(f"unsupported kernel spec {spec!r} (expected 'debian:linux-image-X.Y' for a kernel line, "
                       f"or 'debian:<linux-image package>[=<version>]')")
    name, _, version = spec.removeprefix("debian:").partition("=")
    if version and not _VERSION.fullmatch(version):
        raise LabError(f"kernel spec {spec!r}: {version!r} is not a Debian version")
    if m := _LINE.fullmatch(name):
        if version:
            raise LabError(f"kernel spec {spec!r}: a version pins an ABI package, not a line "
                           f"(write debian:<linux-image ABI package>={version})")
        return KernelSpec(m.group(1), None, None)
    if m := _EXACT.fullmatch(name):
        return KernelSpec(m.group(1), name, version or None)
    raise LabError(f"kernel spec {spec!r}: {name!r} is not a linux-image package or line")


def is_line(package: str) -> bool:
    return bool(_LINE.fullmatch(package))


def line_of(package: str) -> str | None:
    m = _EXACT.fullmatch(package)
    return m.group(1) if m else None


def abi_pattern(line: str, flavour: str = FLAVOUR) -> re.Pattern[str]:
    # 6.1.0-57-amd64, 6.12.117+deb12-amd64, 6.12.57+deb13-amd64; not -cloud-, -rt-, -unsigned, -dbg
    return re.compile(rf"linux-image-{re.escape(line)}(?:\.[0-9]+)*(?:-[0-9]+)?(?:\+[a-z0-9.~]+)?-{re.escape(flavour)}")


def parse_policy(text: str) -> dict[str, str]:
    """`LC_ALL=C apt-cache policy P1 P2 ...` -> {package: candidate} (packages with none left out)."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1].split(":")[0]
        elif current and line.strip().startswith("Candidate:"):
            v = line.split(":", 1)[1].strip()
            if v != "(none)" and _VERSION.fullmatch(v):
                out[current] = v
    return out


def _order(ch: str) -> int:
    # dpkg's lexical order: ~ before everything (even the end), letters before non-letters
    if ch == "~":
        return -1
    if ch.isalpha():
        return ord(ch)
    return ord(ch) + 256


def _cmp_part(a: str, b: str) -> int:
    while a or b:
        na = re.match(r"[^0-9]*", a).group(0)   # type: ignore[union-attr]
        nb = re.match(r"[^0-9]*", b).group(0)   # type: ignore[union-attr]
        for i in range(max(len(na), len(nb))):
            ca = _order(na[i]) if i < len(na) else 0
            cb = _order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(na):], b[len(nb):]
        da = re.match(r"[0-9]*", a).group(0)    # type: ignore[union-attr]
        db = re.match(r"[0-9]*", b).group(0)    # type: ignore[union-attr]
        ia, ib = int(da or 0), int(db or 0)
        if ia != ib:
            return -1 if ia < ib else 1
        a, b = a[len(da):], b[len(db):]
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian policy 5.6.12 ordering (what `dpkg --compare-versions` does): -1, 0 or 1."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), upstream, revision
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def _abi_number(package: str) -> list[int]:
    return [int(n) for n in re.findall(r"[0-9]+", package)]


def newest(candidates: dict[str, str]) -> tuple[str, str]:
    """The newest (package, version): by version, then by ABI number (a rebuild of the same upload)."""
    import functools
    best = max(candidates.items(), key=functools.cmp_to_key(
        lambda x, y: compare_versions(x[1], y[1]) or ((_abi_number(x[0]) > _abi_number(y[0])) -
                                                     (_abi_number(x[0]) < _abi_number(y[0])))))
    return best


def apt_run(argv: list[str]) -> str:
    # LC_ALL=C: apt translates "Candidate:" on a non-English lab box
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LabError(f"{argv[0]} failed: {e} (hil resolves kernel lines with apt: a Debian host)") from e
    if proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {argv}\n{proc.stderr[-1000:]}")
    return proc.stdout


def line_candidates(line: str, run: AptRun = apt_run) -> dict[str, str]:
    """Every ABI package of the line apt can download now -> its candidate version."""
    pattern = abi_pattern(line)
    out = run(["apt-cache", "search", "--names-only", f"^linux-image-{re.escape(line)}[.-]"])
    names = sorted({ln.split(" ", 1)[0] for ln in out.splitlines() if pattern.fullmatch(ln.split(" ", 1)[0])})
    if not names:
        return {}
    return parse_policy(run(["apt-cache", "policy", *names]))


def versions_of(package: str, run: AptRun = apt_run) -> list[str]:
    """Every version apt knows of one package (its policy's version table)."""
    out = run(["apt-cache", "madison", package])
    return [cols[1].strip() for cols in (ln.split("|") for ln in out.splitlines()) if len(cols) >= 3]


def resolve(spec: str, run: AptRun = apt_run) -> Resolved:
    """The exact package and version a kernel spec means now; a pin the archive no longer
    has is an error naming the newest the line offers."""
    ks = parse_spec(spec)
    found = line_candidates(ks.line, run)
    newest_text = ("{0}={1}".format(*newest(found)) if found
                   else f"none: apt knows no linux-image-{ks.line}.*-{FLAVOUR} (run 'apt-get update'?)")
    if ks.package is None:
        if not found:
            raise LabError(f"kernel line {spec!r}: {newest_text}")
        package, version = newest(found)
        return Resolved(package, version, ks.line, spec)
    if ks.package not in found and ks.version is None:
        raise LabError(f"kernel {spec!r}: {ks.package} is not in the archive any more; newest available: "
                       f"{newest_text} (name the line, debian:linux-image-{ks.line}, to follow it)")
    if ks.version is None:
        return Resolved(ks.package, found[ks.package], ks.line, spec)
    if ks.version not in versions_of(ks.package, run):
        raise LabError(f"kernel {spec!r}: {ks.package}={ks.version} is not in the archive any more; newest "
                       f"available: {newest_text} (name the line, debian:linux-image-{ks.line}, to follow it)")
    return Resolved(ks.package, ks.version, ks.line, spec)


def resolve_cached(spec: str) -> Resolved:
    """resolve(), memoised until apt's lists change (apt-get update): two apt calls cost ~1 s."""
    from hil.lab.assets.cache import cache_root, read_json_memo, write_json_atomic
    from hil.lab.assets.debian import apt_lists_stamp
    stamp = apt_lists_stamp()
    memo = cache_root() / "kernel-lines.json"
    known: dict[str, list[str]] = {}
    if stamp:
        data = read_json_memo(memo)
        if isinstance(data, dict) and data.get("stamp") == stamp and isinstance(data.get("specs"), dict):
            known = data["specs"]
    hit = known.get(spec)
    if isinstance(hit, list) and len(hit) == 3 and all(isinstance(x, str) for x in hit):
        return Resolved(hit[0], hit[1], hit[2], spec)
    r = resolve(spec)
    if stamp:
        known[spec] = [r.package, r.version, r.line]
        try:
            write_json_atomic(memo, {"stamp": stamp, "specs": known})
        except OSError:
            pass      # a read-only cache: the next run asks apt again
    return r
