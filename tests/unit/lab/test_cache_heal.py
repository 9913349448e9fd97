"""A truncated cache entry is rebuilt, not fatal (real make, real files)."""
import shutil

import pytest

from hil.lab.assets import probe
from hil.lab.assets.cpio import write_cpio
from hil.lab.assets.l1_image import _cpio_complete


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("gcc") is None, reason="no make/gcc")
def test_a_truncated_cached_probe_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = probe.cached_probe()
    data = first.path.read_bytes()
    first.path.write_bytes(data[:100])                  # a crash before the data reached the disk
    again = probe.cached_probe()
    assert again.path == first.path and again.sha256 == first.sha256
    assert again.path.read_bytes() == data


def test_an_initramfs_cut_short_is_incomplete(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "x").write_bytes(b"y" * 5000)
    cpio = tmp_path / "initrd.cpio"
    write_cpio(root, cpio)
    assert _cpio_complete(cpio)
    data = cpio.read_bytes()
    cpio.write_bytes(data[: len(data) // 2])
    assert not _cpio_complete(cpio)
    assert not _cpio_complete(tmp_path / "missing.cpio")
