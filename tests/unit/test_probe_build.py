"""The probe guest: build, symbols, serial protocol, and real TCG boots (multiboot and PVH)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hil.lab.assets.probe import (
    OPS,
    ProbeBuildError,
    build_probe,
    format_cmdline,
    parse_probe_line,
    source_digest,
)

QEMU = shutil.which("qemu-system-x86_64")
TOOLCHAIN = all(shutil.which(t) for t in ("make", "gcc", "objcopy"))
needs_toolchain = pytest.mark.skipif(not TOOLCHAIN, reason="make/gcc/objcopy not installed")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed")

SMOKE_OPS = [("cpuid", 3), ("pio-kernel", 2), ("pio-user", 2), ("msr", 2), ("hlt", 2)]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if not TOOLCHAIN:
        pytest.skip("make/gcc/objcopy not installed")
    return build_probe(tmp_path_factory.mktemp("probe"))


@needs_toolchain
def test_build_produces_elf(probe):
    assert probe.path.is_file()
    assert probe.path.read_bytes()[:4] == b"\x7fELF"
    assert len(probe.sha256) == 64
    assert probe.pvh_path is not None and probe.pvh_path.is_file()


@needs_toolchain
def test_build_is_reproducible(probe, tmp_path):
    again = build_probe(tmp_path / "again")
    assert again.sha256 == probe.sha256
    assert again.op_ranges == probe.op_ranges


@needs_toolchain
def test_symbols_sane(probe):
    start, end = probe.window
    assert 0 < start < end
    assert set(probe.op_ranges) == set(OPS)
    ranges = sorted(probe.op_ranges.values())
    for s, e in ranges:
        assert start <= s < e <= end
    for (_, e1), (s2, _) in zip(ranges, ranges[1:]):
        assert e1 <= s2, "op ranges overlap"
    for op, (s, e) in probe.op_ranges.items():
        assert probe.op_at(s) == op and probe.op_at(e - 1) == op
    # the stack lies outside the window
    assert probe.stack is not None
    lo, hi = probe.stack
    assert lo < hi and (hi <= start or lo >= end)


@needs_toolchain
def test_pvh_variant_has_same_layout(probe):
    from hil.lab.assets.probe import read_elf_symbols

    assert read_elf_symbols(probe.pvh_path) == read_elf_symbols(probe.path)


@needs_toolchain
def test_boot_headers(probe):
    data = probe.path.read_bytes()
    head = data[:8192]
    off = head.find((0x1BADB002).to_bytes(4, "little"))
    assert off >= 0 and off % 4 == 0, "multiboot header not in the first 8 KiB"
    magic, flags, checksum = (int.from_bytes(head[off + 4 * i: off + 4 * i + 4], "little") for i in range(3))
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0
    assert (0x1BADB002).to_bytes(4, "little") not in probe.pvh_path.read_bytes()[:8192]
    # PVH note: namesz=4, descsz=8, type=18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen\0"
    note = (4).to_bytes(4, "little") + (8).to_bytes(4, "little") + (18).to_bytes(4, "little") + b"Xen\0"
    assert note in data and note in probe.pvh_path.read_bytes()


def test_source_digest_stable():
    assert source_digest() == source_digest()
    assert len(source_digest()) == 64


def test_build_failure_carries_command(tmp_path):
    bad = tmp_path / "guest"
    bad.mkdir()
    (bad / "Makefile").write_text("all:\n\t@echo kaboom; false\n")
    with pytest.raises(ProbeBuildError) as info:
        build_probe(tmp_path / "out", guest_dir=bad)
    assert "make" in info.value.argv
    assert "kaboom" in info.value.output
    assert info.value.returncode != 0


def test_parse_probe_line():
    assert parse_probe_line("hil-probe: event=start version=1 window=0x101000-0x10107e boot=pvh\n") == {
        "event": "start", "version": 1, "window": (0x101000, 0x10107E), "boot": "pvh",
    }
    assert parse_probe_line("hil-probe: event=op name=pio-kernel count=8 tsc=12345") == {
        "event": "op", "name": "pio-kernel", "count": 8, "tsc": 12345,
    }
    assert parse_probe_line("hil-probe: event=done status=ok ops=5\r\n") == {"event": "done", "status": "ok", "ops": 5}
    assert parse_probe_line("hil-probe: event=error msg=unknown-op")["msg"] == "unknown-op"
    # firmware noise before the marker is tolerated
    assert parse_probe_line("\x1b[2Jhil-probe: event=done status=error ops=0")["status"] == "error"
    for junk in ("", "random text", "hil-probe:", "hil-probe: name=x", "hil-probe: event=op count=x",
                 "hil-probe: event=start window=0x1", "hil-probe: event=op bare"):
        assert parse_probe_line(junk) is None, junk


def test_format_cmdline():
    assert format_cmdline([("cpuid", 16), ("pio-kernel", 8)], hlt_timer_us=1000, exit=True) == \
        "ops=cpuid:16,pio-kernel:8 hlt_timer_us=1000 exit=1"
    with pytest.raises(ValueError):
        format_cmdline([("nope", 1)])
    with pytest.raises(ValueError):
        format_cmdline([("cpuid", -1)])
    with pytest.raises(ValueError):
        format_cmdline([])
    with pytest.raises(ValueError):
        format_cmdline([("cpuid", 1)], foo="a b")


def boot_tcg(kernel: Path, machine: str, cmdline: str, log: Path, timeout: float = 60,
             smp: int = 1) -> tuple[int, list[dict]]:
    argv = [QEMU, "-M", machine, "-accel", "tcg", "-cpu", "max", "-m", "64", "-smp", str(smp), "-nodefaults", "-no-reboot",
            "-display", "none", "-serial", f"file:{log}", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel", str(kernel), "-append", cmdline]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [p for p in map(parse_probe_line, text.splitlines()) if p is not None]
    assert lines, f"no probe output; qemu said: {proc.stdout!r}"
    return proc.returncode, lines


@needs_toolchain
@needs_qemu
@pytest.mark.parametrize(
    "machine,variant,boot",
    [
        ("microvm", "path", "multiboot"),   # QEMU tries multiboot before PVH, microvm included
        ("q35", "path", "multiboot"),
        ("microvm", "pvh_path", "pvh"),
        ("q35", "pvh_path", "pvh"),
    ],
)
def test_tcg_boot(probe, tmp_path, machine, variant, boot):
    cmdline = format_cmdline(SMOKE_OPS, exit=1)
    rc, lines = boot_tcg(getattr(probe, variant), machine, cmdline, tmp_path / "serial.log")
    assert rc == 1, lines  # isa-debug-exit: (0 << 1) | 1
    start, *body, done = lines
    assert start == {"event": "start", "version": 1, "window": probe.window, "boot": boot}
    ops = [o for o in body if o["event"] == "op"]
    assert [(o["event"], o["name"], o["count"]) for o in ops] == [("op", n, c) for n, c in SMOKE_OPS]
    assert all(o["tsc"] > 0 and o["tsc_khz"] > 0 and o["samples"] == o["count"] for o in ops)
    # each iteration timed on its own (hil calibrate reads them): as many samples as iterations,
    # each a part of the op's whole time
    iters = {o["name"]: o["v"] for o in body if o["event"] == "samples" and o["kind"] == "iter"}
    assert {n: len(v) for n, v in iters.items()} == dict(SMOKE_OPS)
    assert all(0 < sum(iters[o["name"]]) <= o["tsc"] for o in ops)
    assert done == {"event": "done", "status": "ok", "ops": len(SMOKE_OPS)}


@needs_toolchain
@needs_qemu
def test_tcg_bad_cmdline(probe, tmp_path):
    rc, lines = boot_tcg(probe.path, "microvm", "ops=cpuid:1,bogus:2 exit=1", tmp_path / "serial.log")
    assert rc == 3  # (1 << 1) | 1
    assert [line["event"] for line in lines] == ["start", "error", "done"]
    assert lines[1]["msg"] == "unknown-op"
    assert lines[2] == {"event": "done", "status": "error", "ops": 0}


@needs_toolchain
@needs_qemu
def test_tcg_hlt_timer_period(probe, tmp_path):
    """5 x 20 ms timer sleeps take at least ~100 ms of guest TSC (APIC timer at 1 GHz)."""
    rc, lines = boot_tcg(probe.path, "microvm", format_cmdline([("hlt", 5)], hlt_timer_us=20000, exit=1),
                         tmp_path / "serial.log")
    assert rc == 1
    op = next(line for line in lines if line["event"] == "op")
    assert op["name"] == "hlt" and op["count"] == 5
    freq_khz = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            freq_khz = float(line.split(":")[1]) * 1000
            break
    if freq_khz:
        assert op["tsc"] / freq_khz >= 80, op  # milliseconds, with slack for TSC vs cpuinfo clock


@needs_toolchain
@needs_qemu
def test_tcg_ipi_race_starts_the_kicker_vcpu_and_counts_every_kick(probe, tmp_path):
    """No KVM here: QEMU's own APIC delivers every IPI, so none is late; this checks the AP
    start-up (INIT, SIPI, the real-mode trampoline) and the pair accounting."""
    rc, lines = boot_tcg(probe.path, "microvm", format_cmdline([("ipi-race", 41)], exit=1), tmp_path / "serial.log",
                         smp=2)
    assert rc == 1, lines
    begin = next(line for line in lines if line["event"] == "begin")
    op = next(line for line in lines if line["event"] == "op")
    assert begin["name"] == op["name"] == "ipi-race"
    assert (op["count"], op["sent"], op["irqs"], op["late"]) == (41, 41, 41, 0)
    assert op["tsc_khz"] > 0 and op["lat_max_ns"] >= op["lat_avg_ns"] > 0


@needs_toolchain
@needs_qemu
def test_tcg_cli_window_with_no_source_gives_up_after_the_idle_timeout(probe, tmp_path):
    """No MSI comes here: the op runs its windows until dev_timeout_us passes without an
    interrupt and reports what it took (nothing), so a lost MSI ends the op, not the run."""
    cmdline = format_cmdline([("cli-window", 3)], cli_window_us=1000, dev_timeout_us=100000, begin_wait_us=0, exit=1)
    rc, lines = boot_tcg(probe.path, "microvm", cmdline, tmp_path / "serial.log")
    assert rc == 1, lines
    op = next(line for line in lines if line["event"] == "op")
    assert (op["name"], op["count"], op["irqs"], op["masked"], op["at_sti"], op["masked_rip"]) == \
        ("cli-window", 3, 0, 0, 0, 0)
    assert 2 <= op["windows"] <= 101 and op["tsc_khz"] > 0, op     # 1 ms windows for 100 ms
