"""Series manifests, import of a user's copy and patch-conflict reports (pure logic plus
the real `patch` tool on a tiny tree)."""
import mailbox
from email.message import EmailMessage
from pathlib import Path

import pytest

from hil.lab.errors import LabError
from hil.lab.kernel import PatchConflict, apply_patches, load_series
from hil.lab.kernel.importer import import_series, normalise_subject
from hil.scenario import ConfigError

ROOT = Path(__file__).resolve().parents[3]
GOOD = """name: demo
base: {kind: debian, source_package: linux-source-6.1, headers_package: h, image_package: i}
profile: slave-v2
ship_patches: false
patches:
  - {subject: "KVM: first", file: 0001-first.patch}
  - {subject: "KVM: second", file: 0002-second.patch}
  - {subject: "x86: third", file: 0003-third.patch}
"""


def series_root(tmp_path, text=GOOD):
    d = tmp_path / "kernel_patches/demo"
    d.mkdir(parents=True)
    (d / "series.yaml").write_text(text)
    return tmp_path


def load_err(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_series("demo", series_root(tmp_path, text))
    return str(e.value)


def test_shipped_manifests_load():
    s = load_series("dedicated-cpu", ROOT)
    assert s.profile == "dedicated-v2" and all(p.exists() for p in s.patch_paths())


@pytest.mark.parametrize("mutate,expected", [
    (lambda t: t + "flavour: spicy\n", "kernel_patches/demo/series.yaml:9: flavour: unknown key 'flavour'"),
    (lambda t: t.replace("ship_patches: false", "ship_patches: maybe"), "series.yaml:4: ship_patches: expected true or false"),
    (lambda t: t.replace("profile: slave-v2\n", ""), "series.yaml:1: <top>: missing required key 'profile'"),
    (lambda t: t.replace("kind: debian", "kind: gentoo"), "series.yaml:2: base.kind: 'gentoo' is not one of debian, upstream"),
    (lambda t: t.replace("0002-second", "0001-first"), "series.yaml:7: patches[1].file: patch 0001-first.patch listed twice"),
    (lambda t: t.replace("ship_patches: false", "ship_patches: true"),
     "series.yaml:6: patches[0].file: file not found: 0001-first.patch"),
    (lambda t: t.replace("source_package: linux-source-6.1, ", ""), "series.yaml:2: base: missing required key 'source_package'"),
])
def test_bad_manifests_name_file_line_key(tmp_path, mutate, expected):
    assert expected in load_err(tmp_path, mutate(GOOD))


def test_subject_normalisation():
    assert normalise_subject("[RFC v2 PATCH 14/21]  KVM: Directly\n handle") == "kvm: directly handle"
    assert normalise_subject("[PATCH] [RFC] x86: foo") == "x86: foo"


def _mbox(path: Path, subjects: list[str]) -> Path:
    box = mailbox.mbox(str(path))
    cover = EmailMessage()
    cover["Subject"] = "[RFC v2 PATCH 00/03] cover letter"
    cover.set_content("no diff here\n")
    box.add(cover)
    for s in subjects:
        m = EmailMessage()
        m["Subject"] = s
        m.set_content(f"{s}\n---\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n")
        box.add(m)
    box.flush()
    return path


def test_import_right_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    s = load_series("demo", series_root(tmp_path))
    box = _mbox(tmp_path / "s.mbox", ["[RFC PATCH 01/03] KVM: first", "[RFC PATCH 02/03] KVM: second",
                                      "[RFC PATCH 03/03] x86: third"])
    dest = import_series(s, box)
    assert sorted(p.name for p in dest.glob("*.patch")) == ["0001-first.patch", "0002-second.patch", "0003-third.patch"]
    assert "+b" in (dest / "0002-second.patch").read_text()


def test_import_reordered_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    s = load_series("demo", series_root(tmp_path))
    box = _mbox(tmp_path / "r.mbox", ["[PATCH 2/3] KVM: second", "[PATCH 1/3] KVM: first", "[PATCH 3/3] x86: third"])
    with pytest.raises(LabError, match=r"out of order: '\[PATCH 2/3\] KVM: second' found at position 1, the manifest has it at 2"):
        import_series(s, box)
    box = _mbox(tmp_path / "m.mbox", ["[PATCH 1/3] KVM: first", "[PATCH 3/3] x86: third"])
    with pytest.raises(LabError, match=r"missing patch 2/3: 'KVM: second'"):
        import_series(s, box)


def test_conflict_names_patch_file_and_hunk(tmp_path):
    tree = tmp_path / "tree"
    (tree / "virt/kvm").mkdir(parents=True)
    (tree / "virt/kvm/kvm_main.c").write_text("one\ntwo\nthree\n")
    good = tmp_path / "0001-good.patch"
    good.write_text("--- a/virt/kvm/kvm_main.c\n+++ b/virt/kvm/kvm_main.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n")
    bad = tmp_path / "0002-bad.patch"
    bad.write_text("--- a/virt/kvm/kvm_main.c\n+++ b/virt/kvm/kvm_main.c\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n")
    with pytest.raises(PatchConflict) as e:
        apply_patches(tree, [good, bad])
    first = str(e.value).splitlines()[0]
    assert first == "patch 0002-bad.patch does not apply: virt/kvm/kvm_main.c: hunk #1 (at line 1)"
    assert (tree / "virt/kvm/kvm_main.c").read_text() == "one\nTWO\nthree\n"   # the good one applied, nothing else


def _hil_kernel(*args, env=None):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "hil.cli", "kernel", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env)


def test_slave_cpu_v2_manifest_lists_21_patches_and_is_not_shipped():
    s = load_series("slave-cpu-v2", ROOT)
    assert len(s.patches) == 21 and not s.ship_patches and s.base["version"] == "v3.6-rc4"
    assert s.patches[13].subject == "KVM: Directly handle interrupts by guests without VM EXIT on slave CPUs"


def test_upstream_build_path_argument_errors(tmp_path):
    import os
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    no_tree = _hil_kernel("build", "--series", "slave-cpu-v2", env=env)
    assert no_tree.returncode == 2 and "--tree PATH" in no_tree.stderr
    (tmp_path / "t").mkdir()
    not_kernel = _hil_kernel("build", "--series", "slave-cpu-v2", "--tree", str(tmp_path / "t"), env=env)
    assert not_kernel.returncode == 2 and "not a kernel source tree" in not_kernel.stderr   # exit 2: ERROR
    (tmp_path / "t/Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\n")
    wrong = _hil_kernel("build", "--series", "slave-cpu-v2", "--tree", str(tmp_path / "t"), env=env)
    assert "is Linux 6.1, the series needs v3.6-rc4" in wrong.stderr
    (tmp_path / "t/Makefile").write_text("VERSION = 3\nPATCHLEVEL = 6\n")
    unimported = _hil_kernel("build", "--series", "slave-cpu-v2", "--tree", str(tmp_path / "t"), env=env)
    assert "hil kernel import" in unimported.stderr


def test_unknown_series_named():
    proc = _hil_kernel("show", "slave-cpu-v9")
    assert proc.returncode == 2 and ("no such series (known: core-marker, dedicated-cpu, dedicated-cpu-direct, "
                                     "dedicated-cpu-direct-vintr-masking, slave-cpu-v2)") in proc.stderr


BASES = """name: demo
base: {name: "6.1", kind: debian, source_package: linux-source-6.1, headers_package: h1, image_package: i1}
other_bases:
  - {kind: debian, source_package: linux-source-6.12, headers_package: h2, image_package: i2, patches_dir: "6.12"}
profile: dedicated-v2
patches:
  - {subject: "KVM: first", file: 0001-first.patch}
"""


def test_a_series_on_several_bases(tmp_path):
    root = series_root(tmp_path, BASES)
    d = root / "kernel_patches/demo"
    (d / "0001-first.patch").write_text("x")
    with pytest.raises(ConfigError, match=r"series.yaml:4: other_bases\[0\].patches_dir: no folder 6.12"):
        load_series("demo", root)
    (d / "6.12").mkdir()
    with pytest.raises(ConfigError, match=r"other_bases\[0\].patches_dir: file not found: 6.12/0001-first.patch"):
        load_series("demo", root)
    (d / "6.12/0001-first.patch").write_text("y")
    s = load_series("demo", root)
    assert [b["name"] for b in s.bases] == ["6.1", "6.12"]          # 6.12 named after its source package
    assert s.patch_paths() == [d / "0001-first.patch"]
    assert s.on_base("6.12").patch_paths() == [d / "6.12/0001-first.patch"]
    assert s.base_for_image("i2").base["headers_package"] == "h2"
    with pytest.raises(LabError, match=r"no base '5.10' \(bases: 6.1, 6.12\)"):
        s.on_base("5.10")
    with pytest.raises(LabError, match="built for i1, i2; the topology's L1 kernel is i3"):
        s.base_for_image("i3")
    (d / "series.yaml").write_text(BASES.replace('patches_dir: "6.12"', 'name: "6.1"'))
    with pytest.raises(ConfigError, match=r"other_bases\[0\].name: base '6.1' listed twice"):
        load_series("demo", root)


def test_shipped_series_has_a_6_12_base_with_every_patch_rebased():
    s = load_series("dedicated-cpu", ROOT)
    s612 = s.on_base("6.12")
    assert s612.base["image_package"] == "linux-image-6.12"     # the line, resolved at build time
    assert [p.name for p in s612.patch_paths()] == [p.name for p in s.patch_paths()]
    assert all(p.exists() and p.parent.name == "6.12" for p in s612.patch_paths())


def test_whole_kernel_config_lines_and_the_shipped_full_kernel_series():
    from hil.lab.kernel.build import L1_CONFIG, _config_lines
    assert _config_lines(["# a comment", "CONFIG_KVM=y ", "", 'CONFIG_LOCALVERSION="-x"']) == [
        "CONFIG_KVM=y", 'CONFIG_LOCALVERSION="-x"']
    needs = _config_lines(L1_CONFIG.read_text().splitlines())
    for line in ("CONFIG_KVM_AMD=y", "CONFIG_KVM_INTEL=y", "CONFIG_VIRTIO_CONSOLE=y", "CONFIG_HIST_TRIGGERS=y",
                 "CONFIG_BLK_DEV_INITRD=y", "CONFIG_NO_HZ_FULL=y"):
        assert line in needs
    s = load_series("core-marker", ROOT)
    assert s.build == "full-kernel" and all(p.exists() for p in s.patch_paths())
