"""Kernel lines resolved against a fake apt: the newest ABI wins, pins that left the archive
are errors naming the newest, and series bases follow the line to the resolved upload."""
from pathlib import Path

import pytest

from hil.lab.assets import kernel_line as kl
from hil.lab.errors import LabError
from hil.lab.kernel.manifest import load_series

ROOT = Path(__file__).resolve().parents[3]

SEARCH = """linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-56-amd64-dbg - Debug symbols for linux-image-6.1.0-56-amd64
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-57-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-57-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-57-rt-amd64 - Linux 6.1 for 64-bit PCs, PREEMPT_RT (signed)
linux-image-6.12.117+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.12.48+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
"""
CANDIDATES = {"linux-image-6.1.0-56-amd64": "6.1.192-2", "linux-image-6.1.0-57-amd64": "6.1.192-3",
              "linux-image-6.12.117+deb12-amd64": "6.12.117-1~deb12u1",
              "linux-image-6.12.48+deb12-amd64": "6.12.48-1~deb12u1"}


class FakeApt:
    def __init__(self, candidates=CANDIDATES, search=SEARCH):
        self.candidates, self.search, self.calls = candidates, search, []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[:3] == ["apt-cache", "search", "--names-only"]:
            prefix = argv[3].lstrip("^").replace("\\", "").rstrip("[.-]")
            return "".join(ln + "\n" for ln in self.search.splitlines() if ln.startswith(prefix))
        if argv[:2] == ["apt-cache", "policy"]:
            return "".join(f"{p}:\n  Installed: (none)\n  Candidate: {self.candidates.get(p, '(none)')}\n"
                           for p in argv[2:])
        if argv[:2] == ["apt-cache", "madison"]:
            v = self.candidates.get(argv[2])
            return f" {argv[2]} | {v} | http://deb.debian.org/debian-security bookworm-security/main\n" if v else ""
        raise AssertionError(argv)


def test_a_line_resolves_to_its_newest_abi_package():
    r = kl.resolve("debian:linux-image-6.1", FakeApt())
    assert (r.package, r.version, r.release) == ("linux-image-6.1.0-57-amd64", "6.1.192-3", "6.1.0-57-amd64")
    assert r.headers_package == "linux-headers-6.1.0-57-amd64"
    # 6.12.117 > 6.12.48 numerically, though not as text; cloud/rt/-dbg/-unsigned never count
    assert kl.resolve("debian:linux-image-6.12", FakeApt()).package == "linux-image-6.12.117+deb12-amd64"


def test_the_line_moves_when_the_archive_does():
    moved = dict(CANDIDATES, **{"linux-image-6.1.0-58-amd64": "6.1.200-1"})
    search = SEARCH + "linux-image-6.1.0-58-amd64 - Linux 6.1 for 64-bit PCs (signed)\n"
    assert kl.resolve("debian:linux-image-6.1", FakeApt(moved, search)).package == "linux-image-6.1.0-58-amd64"


def test_an_exact_package_is_kept_and_a_gone_one_names_the_newest():
    assert kl.resolve("debian:linux-image-6.1.0-56-amd64", FakeApt()).version == "6.1.192-2"
    gone = {k: v for k, v in CANDIDATES.items() if k != "linux-image-6.1.0-56-amd64"}
    with pytest.raises(LabError, match=r"linux-image-6.1.0-56-amd64 is not in the archive any more; newest "
                                       r"available: linux-image-6.1.0-57-amd64=6.1.192-3"):
        kl.resolve("debian:linux-image-6.1.0-56-amd64", FakeApt(gone))


def test_a_pinned_version_that_left_the_archive_is_an_error_naming_the_newest():
    assert kl.resolve("debian:linux-image-6.1.0-57-amd64=6.1.192-3", FakeApt()).version == "6.1.192-3"
    with pytest.raises(LabError, match=r"=6.1.158-1 is not in the archive any more; newest available: "
                                       r"linux-image-6.1.0-57-amd64=6.1.192-3"):
        kl.resolve("debian:linux-image-6.1.0-57-amd64=6.1.158-1", FakeApt())


def test_an_unknown_line_and_bad_specs_are_clear_errors():
    with pytest.raises(LabError, match=r"apt knows no linux-image-7.0"):
        kl.resolve("debian:linux-image-7.0", FakeApt())
    for bad, msg in (("/boot/vmlinuz", "unsupported kernel spec"), ("debian:linux-image-6.1=6.1.1-1", "pins an ABI"),
                     ("debian:linux-headers-6.1", "not a linux-image"), ("debian:linux-image-6.1.0-1-amd64=--x", "not a Debian version")):
        with pytest.raises(LabError, match=msg):
            kl.parse_spec(bad)


@pytest.mark.parametrize("a,b,want", [("6.1.192-3", "6.1.192-2", 1), ("6.12.117-1", "6.12.48-1", 1),
                                      ("1.0~rc1-1", "1.0-1", -1), ("1:0.1-1", "2.0-1", 1), ("1.0-1", "1.0-1", 0),
                                      ("6.12.57-1~deb12u1", "6.12.57-1", -1), ("1.0a-1", "1.0+-1", -1)])
def test_debian_version_order(a, b, want):
    assert kl.compare_versions(a, b) == want and kl.compare_versions(b, a) == -want


def test_resolution_is_memoised_until_apt_lists_change(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    apt = FakeApt()
    stamp = ["s1"]
    monkeypatch.setattr("hil.lab.assets.debian.apt_lists_stamp", lambda: stamp[0])
    real = kl.resolve
    monkeypatch.setattr(kl, "resolve", lambda spec: real(spec, apt))
    assert kl.resolve_cached("debian:linux-image-6.1").package == "linux-image-6.1.0-57-amd64"
    n = len(apt.calls)
    assert kl.resolve_cached("debian:linux-image-6.1").version == "6.1.192-3" and len(apt.calls) == n
    stamp[0] = "s2"                      # apt-get update ran: ask again
    apt.candidates = dict(CANDIDATES, **{"linux-image-6.1.0-57-amd64": "6.1.192-4"})
    assert kl.resolve_cached("debian:linux-image-6.1").version == "6.1.192-4" and len(apt.calls) > n


def test_series_bases_name_lines_and_follow_the_resolved_upload():
    series = load_series("dedicated-cpu", ROOT)
    assert all(kl.is_line(str(b["image_package"])) for b in series.bases)
    on = series.base_for_image("linux-image-6.12.117+deb12-amd64").for_kernel(
        "linux-image-6.12.117+deb12-amd64", "6.12.117-1~deb12u1")
    assert on.base["name"] == "6.12" and on.base["headers_package"] == "linux-headers-6.12.117+deb12-amd64"
    assert on.base["image_version"] == "6.12.117-1~deb12u1"
    assert series.base_for_image("linux-image-6.1.0-57-amd64").base["name"] == "6.1"
    with pytest.raises(LabError, match="built for linux-image-6.1, linux-image-6.12"):
        series.base_for_image("linux-image-5.10.0-30-amd64")


def test_no_topology_or_series_names_an_exact_debian_abi():
    files = [*ROOT.glob("qemu_configs/topologies/*.yaml"), *ROOT.glob("kernel_patches/*/series.yaml")]
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            for word in line.replace('"', " ").replace(":", " ").split():
                if word.startswith(("linux-image-", "linux-headers-")):
                    assert kl.is_line(word.replace("linux-headers-", "linux-image-")), f"{f}:{n}: {word} names an exact ABI"
