"""hil kernel build: a series applied to Debian's kernel source at the image's version (each
patch dry-run first, no fuzz), kvm modules built out of tree against the matching headers,
stripped, checked and cached by every input."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hil
from hil.lab import procs
from hil.lab.assets import debian
from hil.lab.assets.cache import cached_dir, digest, file_digest
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.kernel.importer import imported_dir
from hil.lab.kernel.manifest import Series, load_series
from hil.lab.kernel.source import pinned_version, source_tree

MODULES = {"svm": "kvm-amd.ko", "vmx": "kvm-intel.ko"}
# What an out-of-tree kvm build compiles from the patched source; anything else a patch
# touches would come from the headers package unchanged.
MODULE_DIRS = ("arch/x86/kvm/", "virt/kvm/")
L1_CONFIG = Path(__file__).with_name("l1.config")


def code_digest(path: Path) -> str:
    """A module's code without comments, docstrings or layout: a comment-only edit of this
    file keeps every cached build (a full kernel takes 10 minutes), any code edit does not."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return digest(ast.dump(tree))


RECIPE = code_digest(Path(__file__)) if Path(__file__).exists() else "unknown"


def repo_root() -> Path:
    return Path(os.environ.get("HIL_ROOT", Path(hil.__file__).resolve().parent.parent))


@dataclass(frozen=True)
class SeriesBuild:
    series: str
    key: str
    modules: Path
    provenance: dict[str, Any]
    cached: bool
    vmlinuz: Path | None = None      # build: full-kernel: the kernel L1 boots (modules: none, all built in)
    release: str | None = None


class PatchConflict(LabError):
    """A patch does not apply: names the patch, the file and the hunk."""


def _patch_files(series: Series) -> list[Path]:
    if series.ship_patches:
        return series.patch_paths()
    copy = imported_dir(series)
    if copy is None:
        raise LabError(f"series {series.name}: its patches are not shipped; run "
                       f"'hil kernel import MBOX|DIR --series {series.name}' first")
    return [copy / p.file for p in series.patches]


def patch_touches(patch: Path) -> list[str]:
    """The files a unified diff changes (-p1 paths, in order), read from its hunks' headers;
    hunk bodies are skipped by their line counts, so a body line that starts with '+++ ' is
    not taken for a header."""
    lines = patch.read_text(errors="replace").splitlines()
    files: list[str] = []
    i, old_left, new_left = 0, 0, 0
    while i < len(lines):
        line = lines[i]
        if old_left > 0 or new_left > 0:             # inside a hunk
            tag = line[:1]
            if tag in (" ", ""):
                old_left, new_left = old_left - 1, new_left - 1
            elif tag == "-":
                old_left -= 1
            elif tag == "+":
                new_left -= 1
            elif tag != "\\":                          # "\ No newline at end of file"
                raise LabError(f"{patch.name}:{i + 1}: malformed hunk line {line[:60]!r}")
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old = line[4:].split("\t")[0].strip()
            new = lines[i + 1][4:].split("\t")[0].strip()
            path = old if new == "/dev/null" else new
            path = path.split("/", 1)[1] if "/" in path else path
            if path not in files:
                files.append(path)
            i += 1
        elif line.startswith("@@ "):
            m = re.match(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@", line)
            if not m:
                raise LabError(f"{patch.name}:{i + 1}: malformed hunk header {line[:60]!r}")
            old_left = int(m.group(1) if m.group(1) is not None else 1)
            new_left = int(m.group(2) if m.group(2) is not None else 1)
        i += 1
    return files


def check_patches(series: Series, patches: list[Path]) -> None:
    """What each patch touches is read from its diff. A manifest's `touches` must say the
    same, and a modules-out-of-tree build refuses a patch that touches anything outside
    arch/x86/kvm/ and virt/kvm/: that change would be silently dropped."""
    for entry, patch in zip(series.patches, patches):
        touched = patch_touches(patch)
        if not touched:
            raise LabError(f"patch {patch.name} changes no file (not a unified diff?)")
        if entry.touches and sorted(entry.touches) != sorted(touched):
            raise LabError(f"kernel_patches/{series.name}/series.yaml: patch {entry.file}: touches lists "
                           f"{', '.join(sorted(entry.touches))} but the diff changes {', '.join(sorted(touched))}")
        outside = [f for f in touched if not f.startswith(MODULE_DIRS)]
        if series.build == "modules-out-of-tree" and outside:
            raise LabError(f"patch {patch.name} touches {', '.join(outside)}: a modules-out-of-tree build compiles "
                           f"only {' and '.join(MODULE_DIRS)} (the rest comes from the headers package, so the "
                           f"change would be silently dropped); such a series needs 'build: full-kernel'")


def _fuzzy_hunks(tree: Path, patch: Path) -> list[str]:
    """The hunks that apply only with fuzz (GNU patch's default, 2), as 'file: hunk #N', if
    the whole patch then applies (else it is a plain conflict)."""
    dry = procs.run(["patch", "-p1", "--dry-run", "--batch", "--fuzz=2", "-d", str(tree), "-i", str(patch)], timeout=300,
                         capture_output=True, text=True)
    current, hunks = None, []
    for line in dry.stdout.splitlines():
        m = re.match(r"(?:checking|patching) file (.+)", line)
        if m:
            current = m.group(1)
        m = re.match(r"Hunk #(\d+) succeeded at (\d+) with fuzz (\d+)", line)
        if m:
            hunks.append(f"{current}: hunk #{m.group(1)} (at line {m.group(2)}, fuzz {m.group(3)})")
    return hunks if dry.returncode == 0 else []


def apply_patches(tree: Path, patches: list[Path]) -> None:
    """Each patch is tried with --dry-run before it is applied, so a conflict leaves the
    tree as the previous patch left it and says exactly where it failed. No fuzz: a hunk
    whose context does not match exactly could land in the wrong function, so a patch that
    would need fuzz is refused, naming the hunk (an offset alone is accepted)."""
    for patch in patches:
        dry = procs.run(["patch", "-p1", "--dry-run", "--batch", "--fuzz=0", "-d", str(tree), "-i", str(patch)], timeout=300,
                             capture_output=True, text=True)
        if dry.returncode != 0:
            fuzzy = _fuzzy_hunks(tree, patch)
            if fuzzy:
                raise PatchConflict(f"patch {patch.name} applies only with fuzz, refused: {'; '.join(fuzzy)}\n"
                                    f"{dry.stdout}{dry.stderr}")
            current, failures = None, []
            for line in dry.stdout.splitlines():
                m = re.match(r"(?:checking|patching) file (.+)", line)
                if m:
                    current = m.group(1)
                m = re.match(r"Hunk #(\d+) FAILED at (\d+)", line)
                if m:
                    failures.append(f"{current}: hunk #{m.group(1)} (at line {m.group(2)})")
                if "can't find file to patch" in line or "No file to patch" in line:
                    failures.append(f"{current or '?'}: file not found in the source tree")
            where = "; ".join(failures) or dry.stdout.strip().splitlines()[-1:] or ["unknown"]
            raise PatchConflict(f"patch {patch.name} does not apply: {where if isinstance(where, str) else where[0]}\n"
                                f"{dry.stdout}{dry.stderr}")
        procs.run(["patch", "-p1", "--batch", "--quiet", "--fuzz=0", "-d", str(tree), "-i", str(patch)], timeout=300,
                       check=True, capture_output=True)


def _fix_makefile(tree: Path) -> None:
    # For an external module $(srctree) is the headers tree, which has neither virt/kvm nor
    # arch/x86/kvm; trace.h's TRACE_INCLUDE_PATH resolves from include/trace.
    mk = tree / "arch/x86/kvm/Makefile"
    text = mk.read_text()
    for old, new in (("ccflags-y += -I $(srctree)/arch/x86/kvm",
                      f"KVMSRC := {tree}\nccflags-y += -I $(KVMSRC)/arch/x86/kvm -I $(KVMSRC)/include/trace"),
                     ("include $(srctree)/virt/kvm/Makefile.kvm", "include $(KVMSRC)/virt/kvm/Makefile.kvm")):
        if text.count(old) != 1:
            raise LabError(f"{mk}: expected the line {old!r} once, found it {text.count(old)} times: "
                           f"cannot point the build at the extracted source")
        text = text.replace(old, new)
    mk.write_text(text)
    (tree / "include/trace").mkdir(parents=True, exist_ok=True)


def _headers_dir(package: str, version: str, release: str, install: bool) -> Path:
    build = Path(f"/lib/modules/{release}/build")
    installed = debian.installed_versions([package]).get(package)
    if installed and installed != version:
        raise LabError(f"{package} {installed} is installed, the image is {version}: "
                       f"apt-get install {package}={version}")
    if not build.exists() and not install:
        # `hil run` installs nothing by itself: it says what to install
        raise CapabilityMissing(f"the series build needs {package}={version}: apt-get install "
                                f"{package}={version} (or 'hil kernel build', which installs it)")
    if not build.exists():
        proc = subprocess.run(["apt-get", "install", "-y", "-q", f"{package}={version}"], capture_output=True,
                              text=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if proc.returncode != 0 or not build.exists():
            raise LabError(f"cannot install {package}={version} for {build}: "
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return build


def build(series: Series, release: str, install_headers: bool = True) -> SeriesBuild:
    base = series.base
    if base["kind"] != "debian":
        raise LabError(f"series {series.name}: base {base['kind']} {base.get('version')} is built on a user's "
                       f"tree with their toolchain: 'hil kernel build --series {series.name} --tree PATH'")
    if series.build == "full-kernel":
        return build_full_kernel(series)
    assert base["source_package"] and base["headers_package"] and base["image_package"]
    patches = _patch_files(series)
    check_patches(series, patches)
    # source, headers and image: one upload (the archive's newest source may be a later one)
    version = pinned_version(base["source_package"], base["image_package"], base["headers_package"],
                             image_version=base.get("image_version"))
    src = source_tree(base["source_package"], version)
    src_version = headers_version = version
    inputs = {"series": series.name, "source": [base["source_package"], version],
              "headers": [base["headers_package"], version], "image": [base["image_package"], version],
              "patches": [[p.name, file_digest(p)] for p in patches],
              "config": list(series.config_fragment), "compiler": _compiler(), "recipe": RECIPE}

    def make(out: Path) -> None:
        t0 = time.monotonic()
        headers = _headers_dir(base["headers_package"], version, release, install_headers)
        tree = out / "src"
        shutil.copytree(src, tree)
        apply_patches(tree, patches)
        _fix_makefile(tree)
        argv = ["make", "-C", str(headers), f"M={tree / 'arch/x86/kvm'}", f"-j{os.cpu_count() or 2}",
                *series.config_fragment, "modules"]
        proc = procs.run(argv, capture_output=True, text=True, timeout=3600)
        (out / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise LabError(f"kvm module build failed: {argv}\n{(proc.stdout + proc.stderr)[-4000:]}")
        mods = out / "modules"
        mods.mkdir()
        for ko in ["kvm.ko", *(MODULES[a] for a in series.architectures)]:
            built = tree / "arch/x86/kvm" / ko
            subprocess.run(["strip", "--strip-debug", "-o", str(mods / ko), str(built)], check=True)
            vermagic = subprocess.run(["modinfo", "-F", "vermagic", str(mods / ko)], capture_output=True,
                                      text=True).stdout.split()
            if not vermagic or vermagic[0] != release:
                raise LabError(f"{ko}: vermagic {vermagic[:1]} does not match L1's kernel {release}")
        prov = {"series": series.name, "profile": series.profile, "base": dict(base),
                "source_version": src_version, "headers_version": headers_version, "compiler": _compiler(),
                "patches": [{"file": p.name, "sha256": file_digest(p)} for p in patches],
                "config_fragment": list(series.config_fragment), "build_seconds": round(time.monotonic() - t0, 1)}
        (out / "provenance.json").write_text(json.dumps(prov, indent=2))
        shutil.rmtree(tree)

    path, hit = cached_dir("series-build", inputs, make)
    return SeriesBuild(series.name, digest(inputs), path / "modules",
                       json.loads((path / "provenance.json").read_text()), hit)


def _compiler() -> str:
    # in the cache key: a toolchain upgrade rebuilds (the headers' kbuild is keyed by their version)
    proc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise LabError(f"gcc --version failed ({proc.returncode}): {proc.stderr.strip()[-500:]}; install gcc")
    return proc.stdout.splitlines()[0]


def _config_lines(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip().startswith("CONFIG_")]


def _make(tree: Path, *args: str) -> str:
    proc = procs.run(["make", "-C", str(tree), *args], capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise LabError(f"make {' '.join(args)} failed in {tree}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc.stdout


def build_full_kernel(series: Series) -> SeriesBuild:
    """A series that touches core kernel code: the whole kernel from Debian's source, patched,
    configured small (tinyconfig + what hil's L1 needs + the series' fragment, every line
    checked to have stuck), bzImage only: everything L1 needs is built in."""
    base = series.base
    assert base["source_package"] and base["image_package"]
    patches = _patch_files(series)
    check_patches(series, patches)
    src_version = pinned_version(base["source_package"], base["image_package"], image_version=base.get("image_version"))
    src = source_tree(base["source_package"], src_version, full=True)
    wanted = _config_lines(L1_CONFIG.read_text().splitlines()) + _config_lines(list(series.config_fragment))
    inputs = {"series": series.name, "build": series.build, "source": [base["source_package"], src_version],
              "patches": [[p.name, file_digest(p)] for p in patches], "config": wanted,
              "compiler": _compiler(), "recipe": RECIPE}

    def make(out: Path) -> None:
        t0 = time.monotonic()
        tree = out / "src"
        # hard links: patch(1) writes a new file for each one it changes, the cache stays intact
        subprocess.run(["cp", "-al", str(src), str(tree)], check=True)
        apply_patches(tree, patches)
        _make(tree, "tinyconfig")
        fragment = out / "hil.config"
        fragment.write_text("".join(line + "\n" for line in wanted))
        proc = subprocess.run([str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(tree),
                               str(tree / ".config"), str(fragment)], capture_output=True, text=True, cwd=tree)
        if proc.returncode != 0:
            raise LabError(f"merge_config.sh failed: {(proc.stdout + proc.stderr)[-2000:]}")
        _make(tree, "olddefconfig")
        have = set(_config_lines((tree / ".config").read_text().splitlines()))
        lost = [line for line in wanted if not line.endswith("=n") and line not in have]
        if lost:
            raise LabError(f"series {series.name}: config lines that did not stick (a dependency is off): "
                           f"{', '.join(lost)}")
        _make(tree, f"-j{os.cpu_count() or 2}", "bzImage")
        release = _make(tree, "-s", "kernelrelease").strip()
        shutil.copy2(tree / "arch/x86/boot/bzImage", out / "vmlinuz")
        (out / "release").write_text(release)
        shutil.copy2(tree / ".config", out / "config")
        (out / "modules").mkdir()                # none: KVM and the rest are built in
        prov = {"series": series.name, "profile": series.profile, "base": dict(base), "build": series.build,
                "source_version": src_version, "release": release, "compiler": _compiler(),
                "patches": [{"file": p.name, "sha256": file_digest(p)} for p in patches],
                "config": wanted, "build_seconds": round(time.monotonic() - t0, 1)}
        (out / "provenance.json").write_text(json.dumps(prov, indent=2))
        shutil.rmtree(tree)

    path, hit = cached_dir("series-build", inputs, make)
    return SeriesBuild(series.name, digest(inputs), path / "modules",
                       json.loads((path / "provenance.json").read_text()), hit, path / "vmlinuz",
                       (path / "release").read_text())


def build_on_tree(series: Series, tree: Path, make_args: list[str]) -> dict[str, Any]:
    """The lab path for an upstream-based series (e.g. slave-cpu-v2 on v3.6-rc4): the user's
    own tree and toolchain. Patches are applied in place (each dry-run first), the config
    fragment is merged into .config, and bzImage plus modules are built."""
    makefile = tree / "Makefile"
    if not makefile.exists() or "VERSION =" not in makefile.read_text(errors="replace")[:400]:
        raise LabError(f"{tree}: not a kernel source tree (no top-level Makefile with VERSION)")
    want = series.base.get("version") or ""
    head = makefile.read_text(errors="replace")[:400]
    found = ".".join(re.findall(r"^(?:VERSION|PATCHLEVEL) = (\d+)", head, re.M))
    if want.startswith("v") and found and not want[1:].startswith(found):
        raise LabError(f"{tree} is Linux {found}, the series needs {want}")
    t0 = time.monotonic()
    patches = _patch_files(series)
    apply_patches(tree, patches)
    config = tree / ".config"
    if not config.exists():
        subprocess.run(["make", "-C", str(tree), *make_args, "defconfig"], check=True, capture_output=True)
    with open(config, "a") as f:
        f.write("".join(line + "\n" for line in series.config_fragment))
    for target in (["olddefconfig"], [f"-j{os.cpu_count() or 2}", "bzImage", "modules"]):
        _make(tree, *make_args, *target)
    cc = subprocess.run(["make", "-s", "-C", str(tree), *make_args, "kernelversion"], capture_output=True, text=True)
    prov = {"series": series.name, "tree": str(tree), "kernelversion": cc.stdout.strip(), "make_args": make_args,
            "patches": [{"file": p.name, "sha256": file_digest(p)} for p in patches],
            "bzImage": str(tree / "arch/x86/boot/bzImage"), "build_seconds": round(time.monotonic() - t0, 1)}
    (tree / "hil-provenance.json").write_text(json.dumps(prov, indent=2))
    return prov


def build_series(name: str, kernel: Any) -> SeriesBuild:
    """The series for exactly this kernel package, as `hil run` needs it (installs nothing)."""
    series = load_series(name, repo_root()).base_for_image(kernel.package).for_kernel(kernel.package, kernel.version)
    return build(series, kernel.release, install_headers=False)
