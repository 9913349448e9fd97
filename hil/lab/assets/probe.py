"""The probe guest: a bare-metal L2 workload (guest/) whose VM exits the lab counts in L1.

build_probe() runs the guest Makefile and reads the window symbols out of the ELF;
format_cmdline() and parse_probe_line() are the two ends of its command-line / serial
protocol (see guest/probe.c for the authoritative description).
"""
from __future__ import annotations

import hashlib
import logging
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hil.lab import procs
from hil.lab.errors import LabError
from hil.scenario.probe_ops import PROBE_OPS

log = logging.getLogger(__name__)

GUEST_DIR = Path(__file__).resolve().parents[3] / "guest"

#: ops the probe understands, in their command-line spelling (the table: hil/scenario/probe_ops.py)
OPS: tuple[str, ...] = tuple(PROBE_OPS)

#: files under guest/ that make up the probe's sources
SOURCE_PATTERNS: tuple[str, ...] = ("*.c", "*.h", "*.S", "*.lds", "Makefile")

PROBE_PREFIX = "hil-probe:"


class ProbeBuildError(LabError):
    """`make` failed for the probe guest: carries the command and what it printed."""

    def __init__(self, message: str, argv: list[str], output: str, returncode: int | None):
        super().__init__(f"{message}\ncommand: {argv}\nexit code: {returncode}\noutput:\n{output}")
        self.argv = argv
        self.output = output
        self.returncode = returncode


@dataclass(frozen=True)
class ProbeImage:
    path: Path                                   # multiboot + PVH image (what -kernel gets)
    window: tuple[int, int]                      # [__window_start, __window_end)
    op_ranges: dict[str, tuple[int, int]]        # "pio-kernel" -> [start, end)
    sha256: str                                  # of `path`
    pvh_path: Path | None = None                 # same layout, multiboot magic blanked: forces PVH
    stack: tuple[int, int] | None = None         # [bottom, top) of the probe's only stack
    symbols: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def op_at(self, rip: int) -> str | None:
        """The op whose range holds `rip`, or None."""
        for name, (start, end) in self.op_ranges.items():
            if start <= rip < end:
                return name
        return None


def source_digest(guest_dir: Path = GUEST_DIR) -> str:
    """sha256 over the names and contents of the guest sources (a build cache key)."""
    h = hashlib.sha256()
    files = sorted({p for pat in SOURCE_PATTERNS for p in guest_dir.glob(pat) if p.is_file()})
    for p in files:
        h.update(p.name.encode() + b"\0")
        data = p.read_bytes()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def read_elf_symbols(path: Path) -> dict[str, int]:
    """Name -> value for every named symbol (not FILE/SECTION) of a little-endian ELF32/ELF64 file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[5] != 1:
        raise ValueError(f"{path}: not a little-endian ELF file")
    is64 = data[4] == 2
    if is64:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    else:
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)

    def section(i: int) -> tuple[int, int, int, int, int]:
        base = shoff + i * shentsize
        if is64:
            _, sh_type, _, _, off, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", data, base)
        else:
            _, sh_type, _, _, off, size, link, _, _, entsize = struct.unpack_from("<IIIIIIIIII", data, base)
        return sh_type, off, size, link, entsize

    symbols: dict[str, int] = {}
    for i in range(shnum):
        sh_type, off, size, link, entsize = section(i)
        if sh_type != 2:  # SHT_SYMTAB
            continue
        _, str_off, str_size, _, _ = section(link)
        strtab = data[str_off:str_off + str_size]
        entsize = entsize or (24 if is64 else 16)
        for pos in range(off, off + size, entsize):
            if is64:
                st_name, st_info, _, _, st_value, _ = struct.unpack_from("<IBBHQQ", data, pos)
            else:
                st_name, st_value, _, st_info, _, _ = struct.unpack_from("<IIIBBH", data, pos)
            if st_name and (st_info & 0xF) not in (3, 4):  # STT_SECTION, STT_FILE
                name = strtab[st_name:strtab.index(b"\0", st_name)].decode()
                symbols[name] = st_value
    return symbols


def _image_from_elf(path: Path, pvh_path: Path | None) -> ProbeImage:
    symbols = read_elf_symbols(path)

    def sym(name: str) -> int:
        if name not in symbols:
            raise ProbeBuildError(f"probe image lacks symbol {name}", [], "", None)
        return symbols[name]

    window = (sym("__window_start"), sym("__window_end"))
    op_ranges = {op: (sym(f"__op_{s.symbol}_start"), sym(f"__op_{s.symbol}_end")) for op, s in PROBE_OPS.items()}
    stack = None
    if "probe_stack_bottom" in symbols and "probe_stack_top" in symbols:
        stack = (symbols["probe_stack_bottom"], symbols["probe_stack_top"])
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return ProbeImage(path=Path(path), window=window, op_ranges=op_ranges, sha256=sha,
                      pvh_path=pvh_path, stack=stack, symbols=symbols)


def build_probe(out_dir: Path, guest_dir: Path = GUEST_DIR) -> ProbeImage:
    """Build guest/ into out_dir (make -C guest OUT=out_dir) and describe the result."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = ["make", "-C", str(guest_dir), f"OUT={out_dir}"]
    try:
        proc = procs.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    except OSError as e:
        raise ProbeBuildError(f"cannot run make: {e}", argv, "", None) from e
    if proc.returncode != 0:
        raise ProbeBuildError("probe guest build failed", argv, proc.stdout, proc.returncode)
    path = out_dir / "probe.elf"
    pvh = out_dir / "probe-pvh.elf"
    if not path.is_file():
        raise ProbeBuildError("probe guest build produced no probe.elf", argv, proc.stdout, proc.returncode)
    image = _image_from_elf(path, pvh if pvh.is_file() else None)
    start, end = image.window
    if not start < end:
        raise ProbeBuildError(f"empty probe window {start:#x}-{end:#x}", argv, proc.stdout, proc.returncode)
    for op, (s, e) in image.op_ranges.items():
        if not (start <= s < e <= end):
            raise ProbeBuildError(f"op {op} range {s:#x}-{e:#x} outside window", argv, proc.stdout, proc.returncode)
    return image


def cached_probe(guest_dir: Path = GUEST_DIR) -> ProbeImage:
    """The probe built from exactly these sources, shared by every checkout and run: keyed by
    the sources' digest (not make's mtimes), built under the cache's lock and renamed into place."""
    from hil.lab.assets.cache import cached_dir
    inputs = {"sources": source_digest(guest_dir)}
    for attempt in (1, 2):
        path, hit = cached_dir("probe", inputs, lambda out: build_probe(out, guest_dir))
        pvh = path / "probe-pvh.elf"
        try:
            return _image_from_elf(path / "probe.elf", pvh if pvh.is_file() else None)
        except (OSError, ValueError, IndexError, struct.error, ProbeBuildError) as e:
            if not hit or attempt == 2:
                raise ProbeBuildError(f"the probe in {path} is unreadable: {e}", [], "", None) from e
            # truncated or half-deleted (a crash, a full disk): the entry is rebuilt, not fatal
            log.warning("cached probe %s is unreadable (%s): rebuilding it", path, e)
            (path / "inputs.json").unlink(missing_ok=True)
    raise AssertionError("unreachable")


def format_cmdline(ops: list[tuple[str, int]], **extra: object) -> str:
    """`ops=cpuid:16,hlt:4 key=value ...`; True/False become 1/0 (e.g. exit=True)."""
    if not ops:
        raise ValueError("the probe needs at least one op")
    parts = []
    for name, count in ops:
        if name not in OPS:
            raise ValueError(f"unknown probe op {name!r} (known: {', '.join(OPS)})")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000_000:
            raise ValueError(f"bad count {count!r} for probe op {name}")
        parts.append(f"{name}:{count}")
    words = ["ops=" + ",".join(parts)]
    for key, value in extra.items():
        if isinstance(value, bool):
            value = int(value)
        text = str(value)
        if not text or any(c.isspace() for c in text) or any(c.isspace() for c in key):
            raise ValueError(f"bad probe option {key}={value!r}")
        words.append(f"{key}={text}")
    return " ".join(words)


# the op lines' fields (each op's results) and the event=samples lines' position
_INT_KEYS = {"version", "count", "tsc", "ops", "tsc_khz", "samples", "first",
             *(f for s in PROBE_OPS.values() for f in s.results)}


def parse_probe_line(line: str) -> dict | None:
    """Parse one `hil-probe: event=... k=v ...` serial line; None for anything else.

    Integers (version, count, tsc, ops, tsc_khz and each op's result fields) become int; window becomes
    (start, end); the comma-separated samples `v=` become a tuple of ints.
    """
    pos = line.find(PROBE_PREFIX)
    if pos < 0:
        return None
    fields: dict = {}
    for word in line[pos + len(PROBE_PREFIX):].split():
        key, sep, value = word.partition("=")
        if not sep or not key:
            return None
        if key in _INT_KEYS:
            try:
                fields[key] = int(value, 10)
            except ValueError:
                return None
        elif key == "v":
            try:
                fields[key] = tuple(int(x, 10) for x in value.split(","))
            except ValueError:
                return None
        elif key == "window":
            lo, dash, hi = value.partition("-")
            try:
                fields[key] = (int(lo, 16), int(hi, 16))
            except ValueError:
                return None
            if not dash:
                return None
        else:
            fields[key] = value
    if "event" not in fields:
        return None
    return fields
