"""Cache robustness (review P2, P3, C4, D3, S6): memos are written atomically and a bad one is a
miss; a transient KVM-probe failure is retried, not cached forever; prune never leaves an entry
that looks whole but is not; the cpio writer refuses what it cannot archive."""
import io
import json
import os
import subprocess
import threading
from types import SimpleNamespace

import pytest

from hil.lab.assets import cache, cpio, debian
from hil.lab.errors import LabError
from hil.lab import accel

HOUR = 3600.0


@pytest.fixture
def kvm_host(monkeypatch):
    monkeypatch.setattr(accel, "kvm_device_usable", lambda: (True, "/dev/kvm present"))
    monkeypatch.setattr(accel, "qemu_version", lambda binary="qemu-system-x86_64": "QEMU emulator version 8.2.2")


class Probe:
    def __init__(self, *results):
        self.results, self.calls = list(results), 0

    def __call__(self):
        self.calls += 1
        return self.results.pop(0)


class Clock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def memo_file(xdg):
    files = list((xdg / "accel-probe").glob("*.json"))
    assert len(files) == 1
    return files[0]


def test_review_p3_transient_failure_is_retried(xdg, kvm_host):
    clock = Clock()
    probe = Probe((False, "agent did not answer within 25 s (host busy)"), (True, "L1 booted under KVM with svm"))
    first = accel.choose_accel("auto", "k=1", probe, now=clock)
    assert (first.accel, first.probed, probe.calls) == ("tcg", True, 1)
    clock.t += 60
    again = accel.choose_accel("auto", "k=1", probe, now=clock)
    assert (again.accel, again.probed, probe.calls) == ("tcg", False, 1) and "probed again after" in again.reason
    clock.t += HOUR
    retried = accel.choose_accel("auto", "k=1", probe, now=clock)
    assert (retried.accel, retried.probed, probe.calls) == ("kvm", True, 2)
    clock.t += 1000 * HOUR
    kept = accel.choose_accel("auto", "k=1", probe, now=clock)       # a success is cached for good
    assert (kept.accel, kept.probed, probe.calls) == ("kvm", False, 2)


def test_consecutive_failures_back_off_up_to_a_day(xdg, kvm_host):
    clock = Clock()
    probe = Probe(*[(False, "no")] * 8)
    waits = []
    for _ in range(7):
        accel.choose_accel("auto", "k=2", probe, now=clock)
        memo = json.loads(memo_file(xdg).read_text())
        waits.append(memo["retry_after"] - memo["probed_at"])
        clock.t = memo["retry_after"]
    assert waits == [HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR, 24 * HOUR, 24 * HOUR]
    assert probe.calls == 7


def test_a_proven_failure_is_cached_for_good(xdg, kvm_host):
    clock = Clock()
    probe = Probe((False, "L1 booted under KVM but its CPU shows no VMX/SVM", True))
    accel.choose_accel("auto", "k=3", probe, now=clock)
    clock.t += 10_000 * HOUR
    assert accel.choose_accel("auto", "k=3", probe, now=clock).accel == "tcg" and probe.calls == 1


def test_a_clock_set_back_does_not_stretch_the_wait(xdg, kvm_host):
    clock = Clock()
    probe = Probe((False, "busy"), (True, "ok"))
    accel.choose_accel("auto", "k=4", probe, now=clock)
    clock.t -= 30 * 24 * HOUR
    assert accel.choose_accel("auto", "k=4", probe, now=clock).accel == "kvm" and probe.calls == 2


@pytest.mark.parametrize("content", [b'{"accel": "kv', b"", b"[]", b"\xff\xfe garbage", b'{"accel": "xen", "reason": "x"}',
                                     b'{"accel": "tcg", "reason": "x", "probed_at": "soon", "failures": 1}',
                                     b'{"accel": "tcg", "reason": "old format, a transient failure", "probed": true}'])
def test_bad_accel_memo_is_a_miss_and_is_rewritten(xdg, kvm_host, content):
    probe = Probe((True, "ok"), (True, "ok"))
    accel.choose_accel("auto", "k=5", probe, now=Clock())
    path = memo_file(xdg)
    path.write_bytes(content)
    choice = accel.choose_accel("auto", "k=5", probe, now=Clock())
    assert (choice.accel, choice.probed, probe.calls) == ("kvm", True, 2)
    assert json.loads(path.read_text())["accel"] == "kvm"


def test_old_format_success_still_counts(xdg, kvm_host):
    probe = Probe((True, "ok"))
    accel.choose_accel("auto", "k=6", probe, now=Clock())
    memo_file(xdg).write_text(json.dumps({"accel": "kvm", "reason": "KVM boot probe: ok", "probed": True}))
    assert accel.choose_accel("auto", "k=6", Probe(), now=Clock()).accel == "kvm"


def test_memo_that_is_a_fifo_or_directory_is_a_miss_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "dir.json").mkdir()
    assert cache.read_json_memo(tmp_path / "fifo.json") is None
    assert cache.read_json_memo(tmp_path / "dir.json") is None
    assert cache.read_json_memo(tmp_path / "missing.json") is None


def test_unwritable_cache_still_chooses(tmp_path, monkeypatch, kvm_host):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    assert accel.choose_accel("auto", "k=7", Probe((True, "ok")), now=Clock()).accel == "kvm"


def test_write_json_atomic_readers_never_see_half_a_file(tmp_path):
    path = tmp_path / "memo.json"
    big = {"versions": {f"pkg{i}": "1.0-" + "x" * 50 for i in range(3000)}}
    cache.write_json_atomic(path, big)
    stop, bad = threading.Event(), []

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            cache.write_json_atomic(path, {**big, "n": i})

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            if cache.read_json_memo(path) is None:
                bad.append(1)
    finally:
        stop.set()
        t.join()
    assert bad == [] and [p.name for p in tmp_path.iterdir()] == ["memo.json"]


def test_write_json_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "memo.json"
    cache.write_json_atomic(path, {"a": 1})

    def dump_half(obj, f, **kw):
        f.write('{"a": ')
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache.json, "dump", dump_half)
    with pytest.raises(OSError):
        cache.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["memo.json"]


@pytest.fixture
def apt_stamp(monkeypatch):
    real = os.stat

    def fake(p, *a, **k):
        if p == "/var/cache/apt/pkgcache.bin":
            return SimpleNamespace(st_mtime_ns=1, st_size=2)
        return real(p, *a, **k)
    monkeypatch.setattr(debian.os, "stat", fake)


def test_review_p2_truncated_apt_memo_is_a_miss(xdg, apt_stamp, monkeypatch):
    asked = []
    monkeypatch.setattr(debian, "_ask_candidate", lambda p: asked.append(p) or "6.1.158-1")
    assert debian.candidate_version("linux-image-6.1.0-56-amd64") == "6.1.158-1"
    assert debian.candidate_version("linux-image-6.1.0-56-amd64") == "6.1.158-1" and len(asked) == 1
    memo = xdg / "apt-candidates.json"
    memo.write_text('{"stamp": "1-2", "versi')
    assert debian.candidate_version("linux-image-6.1.0-56-amd64") == "6.1.158-1" and len(asked) == 2
    assert json.loads(memo.read_text()) == {"stamp": "1-2", "versions": {"linux-image-6.1.0-56-amd64": "6.1.158-1"}}
    memo.write_text('{"stamp": "1-2", "versions": {"linux-image-6.1.0-56-amd64": "--option"}}')
    assert debian.candidate_version("linux-image-6.1.0-56-amd64") == "6.1.158-1" and len(asked) == 3


@pytest.mark.parametrize("name", ["-oAPT::Get::Fix=1", "Linux-Image", "a", "", "pkg name", "pkg;id", "pkg:amd64"])
def test_package_names_are_checked(name, xdg, tmp_path):
    with pytest.raises(LabError, match="not a Debian package name"):
        debian.candidate_version(name)
    with pytest.raises(LabError, match="not a Debian package name"):
        debian.download(name, "1.0", tmp_path)


def test_download_refuses_a_version_that_is_an_option(tmp_path):
    with pytest.raises(LabError, match="not a Debian version"):
        debian.download("linux-source-6.1", "1 --allow-unauthenticated", tmp_path)


def test_prune_renames_before_deleting_and_sweeps_tombstones(xdg, monkeypatch):
    def build(out):
        (out / "a").write_text("x" * 1000)
        (out / "b").write_text("y")
    paths = [cache.cached_dir("img", {"v": i}, build)[0] for i in range(4)]
    for i, p in enumerate(paths):
        os.utime(p / "inputs.json", (1000 + i, 1000 + i))
    cache.cached_dir("img", {"v": 0}, build)          # a hit counts as a use: v0 is now the newest
    real_rmtree = cache.shutil.rmtree
    monkeypatch.setattr(cache.shutil, "rmtree", lambda *a, **k: None)     # a prune killed before deleting
    cache.prune("img", keep=2)
    survivors = sorted(p.name for p in (xdg / "img").iterdir() if not p.name.startswith("."))
    assert survivors == sorted([paths[0].name, paths[3].name])
    tombs = list((xdg / "img").glob(".*.dead.*"))
    assert len(tombs) == 2                               # out of sight: no lookup sees a half-deleted entry
    again, hit = cache.cached_dir("img", {"v": 1}, build)
    assert not hit and (again / "a").read_text() == "x" * 1000
    monkeypatch.setattr(cache.shutil, "rmtree", real_rmtree)
    cache.prune("img", keep=3)
    assert list((xdg / "img").glob(".*.dead.*")) == []


def test_cpio_refuses_a_fifo_without_blocking(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(LabError, match=r"pipe is not a file, directory or symlink"):
        cpio.write_cpio(root, tmp_path / "out.cpio")


def test_cpio_non_ascii_names_and_size_changes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "café-ünï").write_bytes(b"data")
    out = tmp_path / "a.cpio"
    cpio.write_cpio(root, out)
    listing = subprocess.run(["cpio", "-it", "--quiet"], stdin=open(out, "rb"), capture_output=True)
    if listing.returncode != 0 and b"not found" in listing.stderr:
        pytest.skip("cpio not installed")
    assert listing.stdout.decode().split() == ["café-ünï"]
    f = root / "grows"
    f.write_bytes(b"12345")
    with pytest.raises(LabError, match="changed size"):
        cpio._copy_exactly(f, io.BytesIO(), 4)
    with pytest.raises(LabError, match="changed size"):
        cpio._copy_exactly(f, io.BytesIO(), 6)
