"""The kernel pipeline's rules: no fuzz, no header edits in a modules build, the source pinned
to the image's version, tar extraction that stays in its tree, a Makefile rewrite that
checks each line, a recipe that ignores comments (the real `patch` tool on tiny trees;
apt is faked)."""
import io
import tarfile
from pathlib import Path

import pytest

from hil.lab.errors import LabError
from hil.lab.kernel import PatchConflict, apply_patches, load_series
from hil.lab.kernel.build import _fix_makefile, check_patches, code_digest, patch_touches
from hil.lab.kernel import source
from hil.lab.kernel.source import apt_versions, extract_tree, pinned_version

ROOT = Path(__file__).resolve().parents[3]
LINES = [f"line {i}\n" for i in range(1, 21)]


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "arch/x86/kvm").mkdir(parents=True)
    (tree / "arch/x86/kvm/x86.c").write_text("".join(LINES))
    return tree


def _patch(tmp_path: Path, name: str, start: int, context: list[str], path: str = "arch/x86/kvm/x86.c") -> Path:
    # replaces context[3] by "CHANGED" with three lines of context either side
    body = "".join(" " + c for c in context[:3]) + "-" + context[3] + "+CHANGED\n" + "".join(" " + c for c in context[4:])
    p = tmp_path / name
    p.write_text(f"--- a/{path}\n+++ b/{path}\n@@ -{start},7 +{start},7 @@\n{body}")
    return p


def test_a_patch_that_needs_fuzz_is_refused_naming_patch_and_hunk(tmp_path):
    tree = _tree(tmp_path)
    context = LINES[4:11]
    context[0] = "line 5 as someone else had it\n"          # the first context line differs: fuzz 1
    fuzzy = _patch(tmp_path, "0001-fuzzy.patch", 5, context)
    with pytest.raises(PatchConflict) as e:
        apply_patches(tree, [fuzzy])
    assert str(e.value).splitlines()[0] == ("patch 0001-fuzzy.patch applies only with fuzz, refused: "
                                           "arch/x86/kvm/x86.c: hunk #1 (at line 5, fuzz 1)")
    assert (tree / "arch/x86/kvm/x86.c").read_text() == "".join(LINES)        # untouched


def test_an_exact_patch_applies_even_at_an_offset(tmp_path):
    tree = _tree(tmp_path)
    apply_patches(tree, [_patch(tmp_path, "0001-offset.patch", 2, LINES[4:11])])   # says line 2, is at 5
    assert (tree / "arch/x86/kvm/x86.c").read_text().splitlines()[7] == "CHANGED"


def test_a_real_conflict_is_still_a_conflict_not_fuzz(tmp_path):
    tree = _tree(tmp_path)
    context = LINES[4:11]
    context[3] = "a line the tree does not have\n"
    with pytest.raises(PatchConflict, match=r"^patch 0001-bad.patch does not apply: arch/x86/kvm/x86.c: hunk #1"):
        apply_patches(tree, [_patch(tmp_path, "0001-bad.patch", 5, context)])


SERIES = """name: demo
base: {kind: debian, source_package: linux-source-6.1, headers_package: h, image_package: i}
profile: dedicated-v2
build: BUILD
patches:
  - {subject: "KVM: one", file: 0001-one.patch TOUCHES}
"""


def _series(tmp_path, path: str, build="modules-out-of-tree", touches=""):
    d = tmp_path / "kernel_patches/demo"
    d.mkdir(parents=True, exist_ok=True)
    (d / "series.yaml").write_text(SERIES.replace("BUILD", build).replace("TOUCHES", touches))
    patch = _patch(d, "0001-one.patch", 5, LINES[4:11], path)
    return load_series("demo", tmp_path), [patch]


def test_a_modules_build_refuses_a_patch_to_include(tmp_path):
    series, patches = _series(tmp_path, "include/linux/kvm_host.h")
    with pytest.raises(LabError, match=r"patch 0001-one.patch touches include/linux/kvm_host.h: a modules-out-of-tree "
                                       r"build compiles only arch/x86/kvm/ and virt/kvm/"):
        check_patches(series, patches)
    series, patches = _series(tmp_path, "include/linux/kvm_host.h", build="full-kernel")
    check_patches(series, patches)                   # a whole-kernel build compiles it: fine
    series, patches = _series(tmp_path, "virt/kvm/kvm_main.c")
    check_patches(series, patches)


def test_touches_in_the_manifest_must_match_the_diff(tmp_path):
    series, patches = _series(tmp_path, "virt/kvm/kvm_main.c", touches=", touches: [arch/x86/kvm/x86.c]")
    with pytest.raises(LabError, match=r"series.yaml: patch 0001-one.patch: touches lists arch/x86/kvm/x86.c but "
                                       r"the diff changes virt/kvm/kvm_main.c"):
        check_patches(series, patches)


def test_patch_touches_reads_headers_not_hunk_bodies(tmp_path):
    p = tmp_path / "x.patch"
    p.write_text("Subject: a\n---\n--- a/virt/kvm/a.c\t2020-01-01\n+++ b/virt/kvm/a.c\t2020-01-01\n"
                 "@@ -1,2 +1,3 @@\n one\n+++ include/not/a/header.h\n two\n"
                 "--- /dev/null\n+++ b/arch/x86/kvm/new.c\n@@ -0,0 +1 @@\n+x\n"
                 "--- a/arch/x86/kvm/gone.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-y\n\\ No newline at end of file\n")
    assert patch_touches(p) == ["virt/kvm/a.c", "arch/x86/kvm/new.c", "arch/x86/kvm/gone.c"]


def test_every_shipped_series_passes_its_own_checks():
    for name in ("dedicated-cpu", "core-marker"):
        s = load_series(name, ROOT)
        for base in s.bases:
            on = s.on_base(base["name"])
            check_patches(on, on.patch_paths())


SHOW = {
    "linux-image-6.1.0-56-amd64": "Package: linux-image-6.1.0-56-amd64\nVersion: 6.1.192-2\n\n",
    "linux-headers-6.1.0-56-amd64": "Package: linux-headers-6.1.0-56-amd64\nVersion: 6.1.192-2\n\n"
                                    "Package: linux-headers-6.1.0-56-amd64\nVersion: 6.1.192-2\n\n",
    "linux-source-6.1": "".join(f"Package: linux-source-6.1\nVersion: {v}\n\n"
                                for v in ("6.1.192-3", "6.1.192-2", "6.1.192-1")),
}


def test_the_source_is_pinned_to_the_image_not_the_newest():
    assert apt_versions("linux-source-6.1", SHOW.get) == ["6.1.192-3", "6.1.192-2", "6.1.192-1"]
    assert pinned_version("linux-source-6.1", "linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64",
                          show=SHOW.get) == "6.1.192-2"


def test_a_source_the_archive_lost_fails_naming_the_newest():
    show = dict(SHOW, **{"linux-source-6.1": "Package: linux-source-6.1\nVersion: 6.1.193-1\n\n"})
    with pytest.raises(LabError, match=r"linux-source-6.1=6.1.192-2 \(the version of linux-image-6.1.0-56-amd64\) "
                                       r"is not in the archive \(newest available: 6.1.193-1\)"):
        pinned_version("linux-source-6.1", "linux-image-6.1.0-56-amd64", show=show.get)
    show = dict(SHOW, **{"linux-headers-6.1.0-56-amd64": "Version: 6.1.192-1\n"})
    with pytest.raises(LabError, match=r"linux-headers-6.1.0-56-amd64=6.1.192-2 .* \(newest available: 6.1.192-1\)"):
        pinned_version("linux-source-6.1", "linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64",
                       show=show.get)
    with pytest.raises(LabError, match=r"'linux-image-9-amd64' is not known to apt"):
        pinned_version("linux-source-6.1", "linux-image-9-amd64", show=lambda p: SHOW.get(p, ""))


def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """(kind, name, data or link target) -> a .tar.xz like Debian's, every name under top/."""
    with tarfile.open(path, "w:xz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(f"top/{name}")
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data.encode()))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = data
                tar.addfile(info)
    return path


def _keep(name: str) -> str | None:
    return name.split("/", 1)[1] if "/" in name else None


@pytest.fixture(params=["with-filter", "python-3.11.2"])
def filters(request, monkeypatch):
    """Every tar test twice: with tarfile's data filter and without it, as on Debian 12's
    Python 3.11.2, where hil's own checks are all there is."""
    if request.param == "python-3.11.2":
        monkeypatch.setattr(source, "SAFE_EXTRACT", {})
    return request.param


def test_tar_extraction_skips_in_tree_links_and_keeps_files(tmp_path, filters):
    tar = _tar(tmp_path / "ok.tar.xz", [("file", "a/b.c", "int b;\n"), ("sym", "a/link.c", "b.c"),
                                         ("hard", "a/hard.c", "top/a/b.c")])
    skipped = extract_tree(tar, tmp_path / "tree", _keep, "demo")
    assert (tmp_path / "tree/a/b.c").read_text() == "int b;\n"
    assert skipped == ["a/link.c", "a/hard.c"]
    assert not (tmp_path / "tree/a/link.c").exists() and not (tmp_path / "tree/a/link.c").is_symlink()
    assert not (tmp_path / "tree/a/hard.c").exists()


@pytest.mark.parametrize("members,message", [
    ([("sym", "a/passwd", "/etc/passwd")], r"a link out of the tree: top/a/passwd -> /etc/passwd"),
    ([("sym", "a/up", "../../../outside")], r"a link out of the tree: top/a/up -> ../../../outside"),
    ([("hard", "a/h", "/etc/shadow")], r"a link out of the tree: top/a/h -> /etc/shadow"),
    ([("file", "a/../../evil", "x")], r"unsafe path in the tarball: top/a/../../evil"),
])
def test_tar_extraction_refuses_what_leaves_the_tree(tmp_path, members, message, filters):
    tar = _tar(tmp_path / "bad.tar.xz", members)
    with pytest.raises(LabError, match=message):
        extract_tree(tar, tmp_path / "tree", _keep, "demo")
    assert not (tmp_path / "evil").exists()


def test_tar_extraction_checks_the_real_path(tmp_path, filters):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/a").symlink_to(outside)          # a link already on disk: the name stays inside, the file would not
    tar = _tar(tmp_path / "bad.tar.xz", [("file", "a/x.c", "x")])
    with pytest.raises(LabError, match=r"top/a/x.c would be written outside"):
        extract_tree(tar, tmp_path / "tree", _keep, "demo")
    assert list(outside.iterdir()) == []


MAKEFILE = "ccflags-y += -I $(srctree)/arch/x86/kvm\ninclude $(srctree)/virt/kvm/Makefile.kvm\nkvm-y += x86.o\n"


def test_fix_makefile_checks_each_replacement(tmp_path):
    tree = tmp_path / "src"
    (tree / "arch/x86/kvm").mkdir(parents=True)
    mk = tree / "arch/x86/kvm/Makefile"
    mk.write_text(MAKEFILE)
    _fix_makefile(tree)
    assert f"KVMSRC := {tree}\n" in mk.read_text() and "include $(KVMSRC)/virt/kvm/Makefile.kvm" in mk.read_text()
    mk.write_text(MAKEFILE.replace("include $(srctree)/virt/kvm/Makefile.kvm", "include $(src)/Makefile.kvm"))
    with pytest.raises(LabError, match=r"Makefile: expected the line 'include \$\(srctree\)/virt/kvm/Makefile.kvm' "
                                       r"once, found it 0 times"):
        _fix_makefile(tree)


def test_recipe_ignores_comments_and_docstrings_not_code(tmp_path):
    src = '"""doc"""\nimport os\n\n\ndef f(x):\n    """what f does"""\n    return x + 1  # why\n'
    a = tmp_path / "a.py"
    a.write_text(src)
    base = code_digest(a)
    a.write_text("# a new comment\n" + src.replace("what f does", "what f really does").replace("# why", "# because"))
    assert code_digest(a) == base
    a.write_text(src.replace("x + 1", "x + 2"))
    assert code_digest(a) != base
