"""Unit tests see no host profile of this machine (~/.config/hil/host-profile.yaml, written by
`hil calibrate`): a verdict on fake timings must not be judged against a real lab's costs."""
import pytest


@pytest.fixture(autouse=True)
def _no_machine_host_profile(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
