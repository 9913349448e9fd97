"""Fixtures shared by the lab-layer unit tests."""
import pytest


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """A private XDG cache: hil's cache root under it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "hil"
