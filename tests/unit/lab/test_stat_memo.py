"""The stat memo behind the image cache check: a hash is reused only while every file it read
has the same stats, recorded long enough ago; any change (content, size, a new file in a
watched tree, a file replaced by rename, a touch) computes it again."""
import os

import pytest

from hil.lab.assets import cache

OLD_NS = 1_000_000_000_000_000_000     # a 2001 timestamp: far outside the racy window


@pytest.fixture
def later(monkeypatch):
    """Memos recorded as if well after the files' last change (a fresh file's ctime is now)."""
    real = cache._now_ns
    monkeypatch.setattr(cache, "_now_ns", lambda: real() + 2 * cache.RACY_NS)


class Hasher:
    def __init__(self, *paths):
        self.paths, self.calls = paths, 0

    def __call__(self):
        self.calls += 1
        return {str(p.name): cache.file_digest(p) for p in self.paths}


def aged(*paths):
    for p in paths:
        os.utime(p, ns=(OLD_NS, OLD_NS))


def memo(files, compute, key="k"):
    return cache.stat_memo("test", key, cache.watched_files(files), compute)


def test_unchanged_files_are_not_hashed_again(xdg, later, tmp_path, monkeypatch):
    a = tmp_path / "a"
    a.write_bytes(b"one")
    aged(a)
    h = Hasher(a)
    first = memo([a], h)
    assert memo([a], h) == first and h.calls == 1


@pytest.mark.parametrize("change", ["content-same-size", "size", "touch", "replace-by-rename", "delete"])
def test_any_change_to_a_file_hashes_again(xdg, later, tmp_path, change):
    a = tmp_path / "a"
    a.write_bytes(b"one")
    aged(a)
    h = Hasher(a)
    before = memo([a], h)
    if change == "content-same-size":
        a.write_bytes(b"two")
        aged(a)                       # even with the old mtime put back: ctime moved
    elif change == "size":
        a.write_bytes(b"three")
    elif change == "touch":
        os.utime(a, ns=(OLD_NS + 1, OLD_NS + 1))
    elif change == "replace-by-rename":
        b = tmp_path / "b"
        b.write_bytes(b"one")
        b.rename(a)
    else:
        a.unlink()
        h = Hasher()
    after = memo([a], h)
    assert h.calls == (2 if change != "delete" else 1)
    if change in ("content-same-size", "size"):
        assert after != before


def test_a_new_file_in_a_watched_tree_is_noticed(xdg, later, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.py").write_text("x = 1\n")
    calls = []

    def compute():
        calls.append(1)
        return cache.tree_digest(tree, ("**/*.py",))

    def run():
        return cache.stat_memo("tree", "k", cache.watched_files([], [(tree, ("**/*.py",))]), compute)

    first = run()
    assert run() == first and len(calls) == 1
    (tree / "sub" / "y.py").write_text("y = 2\n")
    assert run() != first


def test_a_file_changed_just_before_recording_is_not_trusted(xdg, tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"fresh")            # mtime and ctime: now, within RACY_NS of the recording
    h = Hasher(a)
    memo([a], h)
    memo([a], h)
    assert h.calls == 2


def test_fingerprint_trust_rules():
    fp = [["/x", 3, 10, 20, 1, 1]]
    assert cache.fingerprint_trusted(fp, [list(e) for e in fp], 20 + cache.RACY_NS + 1)
    assert not cache.fingerprint_trusted(fp, fp, 20 + cache.RACY_NS)           # ctime inside the window
    assert not cache.fingerprint_trusted(fp, [["/x", 3, 10, 21, 1, 1]], 10 ** 18)
    assert not cache.fingerprint_trusted(fp, fp, None)
    assert not cache.fingerprint_trusted(None, fp, 10 ** 18)
    assert cache.fingerprint_trusted([["/gone", None]], [["/gone", None]], 0)


def test_another_key_is_another_memo(xdg, later, tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"one")
    aged(a)
    h = Hasher(a)
    memo([a], h, key={"series": None})
    memo([a], h, key={"series": "s1"})
    assert h.calls == 2


def test_a_bad_memo_is_a_miss_and_an_unwritable_one_no_error(xdg, later, tmp_path, monkeypatch):
    a = tmp_path / "a"
    a.write_bytes(b"one")
    aged(a)
    h = Hasher(a)
    memo([a], h)
    for f in (xdg / "stat-memo").glob("*.json"):
        f.write_text("{not json")
    memo([a], h)
    assert h.calls == 2

    def full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(cache, "write_json_atomic", full)
    for f in (xdg / "stat-memo").glob("*.json"):
        f.unlink()
    assert memo([a], h) == h()


def test_the_image_memo_watches_every_input_it_hashes():
    """What _image_inputs reads: the binaries (links and targets), the recipe and init, the
    agent's files, the shipped packages' files, dpkg's database."""
    from pathlib import Path

    from hil.lab.assets import l1_image
    watched = set(l1_image._input_files())
    for b in (l1_image.PYTHON, l1_image.QEMU, l1_image.BUSYBOX):
        assert Path(os.path.realpath(b)) in watched and Path(b) in watched
    assert {Path(l1_image.__file__), l1_image.INIT_SCRIPT, Path("/var/lib/dpkg/status")} <= watched
    assert l1_image.HIL_SRC / "lab/agent/service.py" in watched
    assert l1_image.HIL_SRC / "lab/qemu/machine.py" in watched
    for name in l1_image.THIRD_PARTY:
        assert l1_image.package_dir(name) / "__init__.py" in watched
