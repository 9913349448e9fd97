"""L0's QEMU version is asked of QEMU once per binary (its stat), not by every hil run."""
import os

from hil.lab import l0
from hil.lab.assets import cache
from hil.lab.qemu import host


def test_the_version_is_remembered_until_the_binary_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(cache, "RACY_NS", 0)     # the fake binary was written just now
    calls = tmp_path / "calls"
    qemu = tmp_path / "qemu-fake"
    qemu.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'QEMU emulator version 10.0.2'\n")
    qemu.chmod(0o755)

    def ask() -> str:
        l0.qemu_version.cache_clear()           # a new hil process
        host.qemu_version.cache_clear()
        return l0.qemu_version("qemu-fake")
    assert ask() == ask() == "QEMU emulator version 10.0.2"
    assert calls.read_text().count("x") == 1
    qemu.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'QEMU emulator version 10.1.0'\n")   # upgraded
    os.utime(qemu, ns=(1, 1))                   # another stat, whatever the clock's granularity
    assert ask() == "QEMU emulator version 10.1.0"
    assert calls.read_text().count("x") == 2
