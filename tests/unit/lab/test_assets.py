"""The cpio writer and the content-addressed cache (pure logic, no lab)."""
import os
import subprocess

import pytest

from hil.lab.assets import cache
from hil.lab.assets.cpio import write_cpio


def test_cpio_roundtrip(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin/tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin/tool").chmod(0o755)
    (root / "bin/alias").symlink_to("tool")
    (root / "odd").write_bytes(b"x" * 5)
    out = tmp_path / "a.cpio"
    write_cpio(root, out)
    listing = subprocess.run(["cpio", "-itv"], stdin=open(out, "rb"), capture_output=True, text=True)
    if listing.returncode != 0 and "not found" in listing.stderr:
        pytest.skip("cpio not installed")
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.stdout.splitlines()]
    assert set(names) == {"bin", "bin/tool", "bin/alias", "odd"}
    ext = tmp_path / "x"
    ext.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], stdin=open(out, "rb"), cwd=ext, check=True)
    assert (ext / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(ext / "bin/tool", os.X_OK)
    assert os.readlink(ext / "bin/alias") == "tool"
    assert (ext / "odd").read_bytes() == b"xxxxx"


def test_cache_hit_skips_build_and_key_follows_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    builds = []

    def build(out):
        builds.append(out)
        (out / "artifact").write_text("v")

    a, hit_a = cache.cached_dir("thing", {"v": 1}, build)
    b, hit_b = cache.cached_dir("thing", {"v": 1}, build)
    c, hit_c = cache.cached_dir("thing", {"v": 2}, build)
    assert (hit_a, hit_b, hit_c) == (False, True, False)
    assert a == b != c and len(builds) == 2
    assert (a / "artifact").read_text() == "v"


def test_cache_failed_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def build(out):
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.cached_dir("thing", {"v": 3}, build)
    leftovers = [p for p in (tmp_path / "hil/thing").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_a_build_killed_outright_is_cleaned_up_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = cache.digest({"v": 4})
    stale = tmp_path / "hil/thing" / f".{key}.k1ll3d"      # what SIGKILL mid-build leaves
    (stale / "half").mkdir(parents=True)
    path, hit = cache.cached_dir("thing", {"v": 4}, lambda out: (out / "artifact").write_text("v"))
    assert not hit and not stale.exists() and (path / "artifact").exists()


def test_prune_keeps_the_newest(tmp_path, monkeypatch):
    import os
    import time
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    paths = []
    for i in range(4):
        p, _ = cache.cached_dir("img", {"v": i}, lambda out: None)
        os.utime(p / "inputs.json", (time.time() + i, time.time() + i))
        paths.append(p)
    cache.prune("img", keep=2)
    assert [p.exists() for p in paths] == [False, False, True, True]
