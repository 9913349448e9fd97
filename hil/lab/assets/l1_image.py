"""The L1 image: a Debian kernel plus an initramfs holding QEMU, Python, the kvm modules
and hil's own agent, so the L1 side runs the same Python a bare-metal lab host would."""
from __future__ import annotations

import json
import logging
import lzma
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from pathlib import Path

import importlib.util

import hil
from hil.lab import procs
from hil.lab.assets import debian, kernel_line
from hil.lab.assets import cache as cache_module
from hil.lab.assets.cache import cached_dir, digest, file_digest, prune, stat_memo, tree_digest, watched_files
from hil.lab.assets.cpio import write_cpio
from hil.lab.errors import CapabilityMissing, LabError
from hil.lab.qemu.host import QEMU_BINARY

if TYPE_CHECKING:      # the kernel package builds on assets, not the other way round
    from hil.lab.kernel.build import SeriesBuild

log = logging.getLogger(__name__)

HIL_SRC = Path(hil.__file__).resolve().parent
INIT_SCRIPT = Path(__file__).with_name("l1_init.sh")
# Host files copied into the image, each traced back to its Debian package for provenance.
# Debian's own Python (not a venv or pyenv one): its stdlib lives in /usr/lib/python3.X.
PYTHON = os.path.realpath("/usr/bin/python3")
PYTHON_LIB = Path("/usr/lib") / Path(PYTHON).name
QEMU = QEMU_BINARY
BUSYBOX = "/bin/busybox"
# Firmware the L2 machines need (microvm: qboot/bios-microvm; pc/q35: SeaBIOS + option ROMs),
# looked up where Debian's QEMU looks for it.
QEMU_FIRMWARE = ("qboot.rom", "bios-256k.bin", "bios-microvm.bin", "bios.bin", "linuxboot_dma.bin",
                 "multiboot_dma.bin", "pvh.bin", "kvmvapic.bin")
FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios")
# Module groups: the L1 init loads the agent's virtio-serial channel and fw_cfg's sysfs files
# (a booted L1's L2 request: hil/lab/agent/early.py) always, then the KVM vendor module that
# matches L1's CPU; the agent loads a device's group when L2 gets that device (hil/lab/devices:
# vfio for an assigned PCI device, net for a tap and vhost-net).
MODULE_GROUPS = {"common": ("virtio-pci", "virtio-console"), "fwcfg": ("qemu_fw_cfg",), "svm": ("kvm-amd",),
                 "vmx": ("kvm-intel",), "vfio": ("vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio-pci"),
                 "net": ("tun", "vhost_net", "bridge")}
DEVICE_GROUPS = ("vfio", "net")
OPTIONAL_GROUPS = (*DEVICE_GROUPS, "fwcfg")     # a kernel without them still boots the agent
PYTHON_PRUNE = {"test", "idlelib", "tkinter", "lib2to3", "ensurepip", "turtledemo", "pydoc_data",
                "site-packages", "dist-packages", "__pycache__", "distutils"}
# The agent's own modules: the L1 side needs nothing from the other layers.
# the agent and what it imports (test_layering checks the closure)
AGENT_FILES = ("__init__.py", "lab/__init__.py", "lab/errors.py", "lab/owner.py", "lab/signals.py",
               "lab/qemu/__init__.py", "lab/qemu/machine.py", "lab/qemu/host.py", "lab/kvm", "lab/stimuli", "lab/devices", "lab/agent")
# third-party packages shipped with it (pure Python; tests/unit/test_layering.py checks the closure),
# found without importing them (pyroute2's import alone is ~60 ms of every hil run)
THIRD_PARTY = ("qemu.qmp", "ptrace", "pyroute2")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise CapabilityMissing(f"Python package {name} is missing: run the README's set-up command (make setup)")
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class KernelAssets:
    spec: str
    package: str
    version: str
    release: str           # uname -r, e.g. 6.1.0-56-amd64
    vmlinuz: Path
    modules: Path          # directory of the .ko files the image needs
    cached: bool


@dataclass(frozen=True)
class L1Image:
    kernel: KernelAssets
    initrd: Path
    key: str
    cached: bool
    packages: dict[str, str] = field(default_factory=dict)   # Debian package -> version
    series: dict[str, object] = field(default_factory=dict)   # the kernel series' build provenance

    def provenance(self) -> dict[str, object]:
        return {"kernel_spec": self.kernel.spec, "kernel_package": self.kernel.package, "kernel_version": self.kernel.version,
                "kernel_release": self.kernel.release, "image_key": self.key,
                "packages": dict(sorted(self.packages.items())), "series": self.series}


def _module_name(path: Path) -> str:
    return path.name.removesuffix(".xz").removesuffix(".ko").replace("_", "-")


def _stage_module(ko: Path, out_dir: Path) -> Path:
    """The module as a plain, debug-stripped .ko (the L1 init's busybox insmod reads no .xz)."""
    dst = out_dir / f"{ko.name.removesuffix('.xz').removesuffix('.ko')}.ko"
    if ko.suffix == ".xz":
        tmp = dst.with_suffix(".ko.raw")
        tmp.write_bytes(lzma.decompress(ko.read_bytes()))
        ko = tmp
    subprocess.run(["strip", "--strip-debug", "-o", str(dst), str(ko)], check=True, timeout=120)
    if ko.suffix == ".raw":
        ko.unlink()
    return dst


def _load_order(root: Path, names: tuple[str, ...], optional: bool = False) -> list[Path]:
    """The .ko files for names and everything they depend on (modinfo depends=), each
    after its dependencies, so the L1 init can insmod them in this order. optional: a name
    this kernel does not have is left out (6.2+ folded vfio_virqfd into vfio)."""
    # Debian's 6.12 packages compress modules (.ko.xz); 6.1's do not.
    index = {_module_name(p): p for pattern in ("*.ko", "*.ko.xz") for p in root.rglob(pattern)}
    builtin = root / "modules.builtin"     # e.g. 6.12 builds virtio-pci in: nothing to load
    built_in = {_module_name(Path(line)) for line in builtin.read_text().split()} if builtin.exists() else set()
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("_", "-")
        if name in seen:
            return
        seen.add(name)
        if name in built_in and name not in index:
            return
        if name not in index:
            raise LabError(f"kernel module {name} not found under {root}")
        deps = subprocess.run(["modinfo", "-F", "depends", str(index[name])], capture_output=True,
                              text=True, check=True, timeout=60).stdout.strip()
        for dep in filter(None, deps.split(",")):
            visit(dep)
        order.append(index[name])

    for n in names:
        if optional and n.replace("_", "-") not in index:
            continue
        visit(n)
    return order


def kernel_assets(spec: str) -> KernelAssets:
    """'debian:linux-image-X.Y' (a line: the newest ABI apt has now) or 'debian:<package>[=<version>]'
    -> vmlinuz and the kvm module closure from that exact package version."""
    resolved = kernel_line.resolve_cached(spec)
    package, version = resolved.package, resolved.version
    inputs = {"package": package, "version": version, "modules": MODULE_GROUPS, "recipe": 3}

    def build(out: Path) -> None:
        deb = debian.download(package, version, out / "deb")
        log.info("kernel %s: unpacking vmlinuz and the kvm modules", package)
        debian.extract(deb, out / "root")
        (out / "modules").mkdir()
        mods_root = next((out / "root/lib/modules").iterdir())
        for group, names in MODULE_GROUPS.items():
            order = _load_order(mods_root, names, optional=group in OPTIONAL_GROUPS)
            staged = [_stage_module(ko, out / "modules") for ko in order]
            (out / "modules" / f"order.{group}").write_text("".join(ko.stem + "\n" for ko in staged))
        vmlinuz = next((out / "root/boot").glob("vmlinuz-*"))
        shutil.copy2(vmlinuz, out / "vmlinuz")
        (out / "release").write_text(mods_root.name)
        shutil.rmtree(out / "root")
        shutil.rmtree(out / "deb")

    path, hit = cached_dir("kernel", inputs, build)
    return KernelAssets(spec, package, version, (path / "release").read_text(), path / "vmlinuz",
                        path / "modules", hit)


def _ldd(paths: list[str]) -> set[str]:
    libs: set[str] = set()
    for p in paths:
        out = subprocess.run(["ldd", p], capture_output=True, text=True, timeout=60).stdout
        for m in re.finditer(r"(/\S+) \(0x", out):
            libs.add(m.group(1))
    return libs


def _copy_host(src: str, root: Path) -> None:
    dest = root / src.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), dest)


def _host_inputs() -> tuple[list[str], dict[str, str]]:
    """Host files the image copies, and the Debian packages (with versions) they come from."""
    for need in (PYTHON, QEMU, BUSYBOX):
        if not os.path.exists(need):
            raise CapabilityMissing(f"{need} is missing: run the README's set-up command (make setup)")
    binaries = [PYTHON, QEMU, BUSYBOX]
    firmware = [str(Path(d) / fw) for d in FIRMWARE_DIRS for fw in QEMU_FIRMWARE if (Path(d) / fw).exists()]
    files = binaries + firmware + [str(PYTHON_LIB / "os.py"), str(PYTHON_LIB / "json/__init__.py")]
    owners = debian.owning_packages(sorted({os.path.realpath(f) for f in files} | set(files)))
    names = sorted(set(owners.values()))
    versions = debian.installed_versions(names)
    return binaries, {n: versions.get(n, "unknown") for n in names}


def _stage_python(root: Path) -> list[str]:
    dynload: list[str] = []
    for d, dirs, files in os.walk(PYTHON_LIB):
        dirs[:] = [x for x in dirs if x not in PYTHON_PRUNE and not x.startswith("config-")]
        for f in files:
            src = Path(d) / f
            dest = root / str(src).lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            if f.endswith(".so"):
                dynload.append(str(src))
    return dynload


def _stage_hil(root: Path) -> None:
    lib = root / "opt/hil/lib"
    for rel in AGENT_FILES:
        src = HIL_SRC / rel
        dest = lib / "hil" / rel
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    for name in THIRD_PARTY:
        shutil.copytree(package_dir(name), lib / name.replace(".", "/"),
                        ignore=shutil.ignore_patterns("__pycache__"))


def _compile(root: Path) -> None:
    # Precompiled bytecode: compiling the stdlib at every L1 boot under TCG would cost seconds.
    for d in (root / str(PYTHON_LIB).lstrip("/"), root / "opt/hil/lib"):
        procs.run([PYTHON, "-m", "compileall", "-q", "-j0", "-d", "/" + str(d.relative_to(root)), str(d)],
                  check=True, capture_output=True, timeout=300)


def _stage_busybox(root: Path) -> None:
    _copy_host(BUSYBOX, root)
    out = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True, timeout=60).stdout
    for applet in out.split():
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")


def _cpio_complete(path: Path) -> bool:
    """An initramfs written whole ends with the newc trailer record (then zero padding)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - 4096))
            tail = f.read()
    except OSError:
        return False
    return tail.rstrip(b"\0").endswith(b"TRAILER!!!")


def _input_trees() -> list[tuple[Path, tuple[str, ...]]]:
    agent = [(HIL_SRC / rel, ("**/*.py",)) for rel in AGENT_FILES if (HIL_SRC / rel).is_dir()]
    return agent + [(package_dir(name), ("**/*.py",)) for name in THIRD_PARTY]


def _input_files() -> list[Path]:
    """Every file _image_inputs reads (and the dpkg database its package lookups read): while
    their stats are unchanged, its result is reused instead of hashing ~100 MB again."""
    files = [Path(os.path.realpath(b)) for b in (PYTHON, QEMU, BUSYBOX)] + [Path(b) for b in (PYTHON, QEMU, BUSYBOX)]
    files += [Path(d) / fw for d in FIRMWARE_DIRS for fw in QEMU_FIRMWARE] + [Path(d) for d in FIRMWARE_DIRS]
    files += [PYTHON_LIB / "os.py", PYTHON_LIB / "json/__init__.py", Path("/var/lib/dpkg/status"),
              Path("/var/lib/dpkg/info"), Path(__file__), INIT_SCRIPT, Path(cache_module.__file__)]
    files += [HIL_SRC / rel for rel in AGENT_FILES if not (HIL_SRC / rel).is_dir()]
    return watched_files(files, _input_trees())


def _image_inputs(series_build: SeriesBuild | None, kernel: KernelAssets) -> dict[str, object]:
    """What the image is built from, hashed: the cache key (and the image's own image.json)."""
    binaries, packages = _host_inputs()
    return {
        "series": series_build.key if series_build else None,
        "kernel": [kernel.package, kernel.version],
        "packages": packages,
        "binaries": {b: file_digest(Path(os.path.realpath(b))) for b in binaries},
        "firmware": list(QEMU_FIRMWARE),
        "recipe": file_digest(Path(__file__)),
        "init": file_digest(INIT_SCRIPT),
        "agent": {rel: tree_digest(HIL_SRC / rel, ("**/*.py",)) if (HIL_SRC / rel).is_dir() else file_digest(HIL_SRC / rel) for rel in AGENT_FILES},
        "hil": hil.__version__,
        "qemu.qmp": tree_digest(package_dir("qemu.qmp"), ("**/*.py",)),
        "python-ptrace": tree_digest(package_dir("ptrace"), ("**/*.py",)),
        "pyroute2": tree_digest(package_dir("pyroute2"), ("**/*.py",)),
    }


def build_l1_image(kernel: KernelAssets, series_build: SeriesBuild | None = None) -> L1Image:
    """series_build: a kernel series built for `kernel` (hil.lab.kernel.build_series) whose
    rebuilt modules replace the stock ones, or whose whole kernel replaces the package's."""
    if series_build is not None and series_build.vmlinuz:   # a whole kernel of the series' own
        kernel = replace(kernel, vmlinuz=series_build.vmlinuz, release=series_build.release or kernel.release,
                         modules=series_build.modules)
    # keyed by checkout too: two checkouts sharing the cache each keep their own memo
    inputs = stat_memo("l1-image-inputs", {"series": series_build.key if series_build else None,
                                            "kernel": [kernel.package, kernel.version], "src": str(HIL_SRC)},
                       _input_files(), lambda: _image_inputs(series_build, kernel))
    packages = inputs["packages"]

    def build(out: Path) -> None:
        root = out / "root"
        log.info("L1 image: staging busybox, Python, QEMU and the agent")
        for d in ("bin", "dev", "proc", "sys", "run", "tmp", "etc", "lib/modules/hil"):
            (root / d).mkdir(parents=True, exist_ok=True)
        _stage_busybox(root)
        dynload = _stage_python(root)
        _copy_host(PYTHON, root)
        (root / "usr/bin/python3").symlink_to(Path(PYTHON).name)
        _copy_host(QEMU, root)
        for lib in _ldd([PYTHON, QEMU] + dynload):
            _copy_host(lib, root)
        for d in FIRMWARE_DIRS:
            for fw in QEMU_FIRMWARE:
                if (Path(d) / fw).exists():
                    _copy_host(str(Path(d) / fw), root)
        for f in kernel.modules.iterdir():
            shutil.copy2(f, root / "lib/modules/hil" / f.name)
        if series_build:
            for ko in series_build.modules.glob("*.ko"):   # same names: load order unchanged
                shutil.copy2(ko, root / "lib/modules/hil" / ko.name)
        _stage_hil(root)
        log.info("L1 image: compiling Python bytecode")
        _compile(root)
        init = root / "init"
        shutil.copy2(INIT_SCRIPT, init)
        init.chmod(0o755)
        (root / "etc/hil").mkdir()
        (root / "etc/hil/image.json").write_text(json.dumps(inputs, indent=1, sort_keys=True))
        version = subprocess.run([QEMU, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
        (root / "etc/hil/qemu-version").write_text(version.splitlines()[0] + "\n")
        log.info("L1 image: writing the initrd")
        write_cpio(root, out / "initrd.cpio")
        shutil.rmtree(root)

    path, hit = cached_dir("l1-image", inputs, build)
    if hit and not _cpio_complete(path / "initrd.cpio"):
        # truncated (a crash before fsync, a full disk): rebuilt, never booted half
        log.warning("cached L1 image %s is incomplete: rebuilding it", path)
        (path / "inputs.json").unlink(missing_ok=True)
        path, hit = cached_dir("l1-image", inputs, build)
    if not hit:
        prune("l1-image", keep=6)
    return L1Image(kernel, path / "initrd.cpio", digest(inputs), hit, packages,
                   series_build.provenance if series_build else {})
