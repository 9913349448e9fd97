"""`hil kernel import` never writes outside its cache and never blocks (review S2, Appendix C):
series and patch file names are single path components, a folder's symlinks, FIFOs and other
non-regular files are refused unopened, and an import is renamed into place whole."""
import mailbox
import os
import signal
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from hil.lab.errors import LabError
from hil.lab.kernel import importer
from hil.lab.kernel.importer import component, import_series, imported_dir
from hil.lab.kernel.manifest import load_series

ROOT = Path(__file__).resolve().parents[3]
DIFF = "---\n--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n+owned\n"


def series_dir(where: Path, name: str = "demo", file: str = "01.patch", subject: str = "x: evil one") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "series.yaml").write_text(
        f'name: "{name}"\nbase: {{kind: upstream, version: v3.6-rc4}}\nprofile: slave-v2\nship_patches: false\n'
        f'patches:\n  - {{subject: "{subject}", file: "{file}"}}\n')
    return where


def mbox(path: Path, subject: str = "[PATCH 1/1] x: evil one") -> Path:
    box = mailbox.mbox(str(path))
    m = EmailMessage()
    m["From"] = "a <a@b>"
    m["Subject"] = subject
    m.set_content(DIFF)
    box.add(m)
    box.flush()
    return path


def everything_under(top: Path) -> set[Path]:
    return {p for p in top.rglob("*")}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    xdg = tmp_path / "deep/down/xdg"
    xdg.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    return xdg


def test_review_s2_traversal_is_refused_and_nothing_is_written(tmp_path, cache):
    evil = series_dir(tmp_path / "evilseries", name="../../../escaped-name", file="../../escaped-file.patch")
    box = mbox(tmp_path / "evil.mbox")
    before = everything_under(tmp_path)
    with pytest.raises(LabError, match=r"series name '\.\./\.\./\.\./escaped-name' is not a plain file name"):
        import_series(load_series(evil, ROOT), box)
    assert everything_under(tmp_path) == before


def test_traversal_in_a_patch_file_name_is_refused(tmp_path, cache):
    evil = series_dir(tmp_path / "evilseries", file="../../escaped-file.patch")
    before = everything_under(tmp_path)
    with pytest.raises(LabError, match=r"patch file '\.\./\.\./escaped-file\.patch' is not a plain file name"):
        import_series(load_series(evil, ROOT), mbox(tmp_path / "evil.mbox"))
    assert everything_under(tmp_path) - before == {tmp_path / "evil.mbox"}


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs", "a\0b", ".hidden", "x" * 300, "a\nb", "..a",
                                  "a b", "-"])
def test_component_refuses(name):
    with pytest.raises(LabError, match="is not a plain file name"):
        component("patch file", name)


@pytest.mark.parametrize("name", ["01.patch", "0001-kvm-svm-dedicated-mode-hlt.patch", "slave-cpu-v2", "v3.6_rc4+x"])
def test_component_accepts(name):
    assert component("patch file", name) == name


def test_shipped_series_names_are_plain():
    for manifest in (ROOT / "kernel_patches").glob("*/series.yaml"):
        s = load_series(manifest.parent.name, ROOT)
        component("series", s.name)
        for p in s.patches:
            component("patch file", p.file)


@pytest.fixture
def no_hang():
    def fire(signum, frame):
        raise TimeoutError("blocked")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fifo_in_a_folder_is_refused_without_blocking(tmp_path, cache, no_hang):
    d = tmp_path / "fifodir"
    d.mkdir()
    os.mkfifo(d / "01.patch")
    with pytest.raises(LabError, match=r"01\.patch: is a FIFO"):
        import_series(load_series(series_dir(tmp_path / "s"), ROOT), d)


def test_fifo_as_the_mbox_is_refused_without_blocking(tmp_path, cache, no_hang):
    os.mkfifo(tmp_path / "box")
    with pytest.raises(LabError, match="is a FIFO"):
        import_series(load_series(series_dir(tmp_path / "s"), ROOT), tmp_path / "box")


def test_symlink_in_a_folder_is_refused_not_followed(tmp_path, cache):
    secret = tmp_path / "secret.patch"
    secret.write_text("Subject: [PATCH] x: evil one\n\n" + DIFF)
    d = tmp_path / "symdir"
    d.mkdir()
    (d / "01.patch").symlink_to(secret)
    with pytest.raises(LabError, match=r"01\.patch: is a symlink"):
        import_series(load_series(series_dir(tmp_path / "s"), ROOT), d)
    (d / "01.patch").unlink()
    (d / "01.patch").write_text(secret.read_text())            # the same content as a plain file imports
    assert (import_series(load_series(series_dir(tmp_path / "s"), ROOT), d) / "01.patch").exists()


def test_oversized_mbox_is_refused_before_parsing(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(importer, "MAX_IMPORT_BYTES", 1000)
    box = tmp_path / "big.mbox"
    box.write_text("From x\n" + "+A" * 1000)
    with pytest.raises(LabError, match="over the"):
        import_series(load_series(series_dir(tmp_path / "s"), ROOT), box)


def test_import_is_whole_or_nothing_and_repeatable(tmp_path, cache, monkeypatch):
    s = load_series(series_dir(tmp_path / "s"), ROOT)
    box = mbox(tmp_path / "ok.mbox")
    first = import_series(s, box)
    killed = first.parent / f".{first.name}.abandoned"      # what an import killed outright leaves
    killed.mkdir()
    os.utime(killed, (0, 0))
    again = import_series(s, box)
    assert first == again and (again / "01.patch").read_text().endswith("+owned\n")
    assert first.is_relative_to(cache / "hil/series/demo")
    assert [p.name for p in first.parent.iterdir()] == [first.name]         # no temporaries or tombstones
    assert imported_dir(s) == first

    def broken(path, text):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(importer, "_write_synced", broken)
    other = load_series(series_dir(tmp_path / "t", name="other"), ROOT)
    with pytest.raises(OSError):
        import_series(other, box)
    assert list((cache / "hil/series/other").iterdir()) == [] and imported_dir(other) is None


def test_hil_kernel_import_cli_exits_2_without_traceback(tmp_path):
    evil = series_dir(tmp_path / "evilseries", name="../../../escaped-name", file="../../escaped-file.patch")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "kernel", "import", str(mbox(tmp_path / "e.mbox")),
                           "--series", str(evil)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "is not a plain file name" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "escaped-name").exists() and not (tmp_path / "escaped-file.patch").exists()
