"""The walls of hil's design, checked on the source: a layer imports only the layers it may
(data flows model -> scenario -> lab -> verdict -> front ends), the agent code shipped into
L1 imports nothing that is not shipped, and no two packages import each other."""
import ast
import functools
import sys
from pathlib import Path

from hil.lab.assets.l1_image import AGENT_FILES

HIL = Path(__file__).resolve().parents[2] / "hil"

# layer -> the layers it may import (besides itself and the bare `hil` package)
ALLOWED = {
    "paths": set(),
    "model": set(),
    "scenario": {"model", "paths"},
    "measurement": {"model"},
    "lab": {"scenario", "model", "measurement", "paths"},
    "verdict": {"measurement", "scenario", "model"},
    "report": {"verdict", "measurement", "model"},
    "runner": {"lab", "verdict", "scenario", "measurement", "model", "paths"},
    "batch": {"runner", "report", "verdict", "scenario", "measurement", "model", "paths"},
    "lava": set(),
    "kut": {"batch", "runner", "report", "verdict", "lab", "scenario", "measurement", "model", "paths"},
    "calibrate": {"verdict", "scenario", "model", "measurement", "paths"},
    "cli": {"batch", "lava", "kut", "calibrate", "runner", "report", "verdict", "lab", "scenario", "measurement", "model",
            "paths"},
    "pytest_plugin": {"runner", "report", "verdict", "scenario", "measurement", "model", "paths"},
}
# third-party packages the agent may use in L1 (the image ships them)
AGENT_THIRD_PARTY = {"qemu", "ptrace", "pyroute2"}


def module_name(path: Path) -> str:
    rel = path.relative_to(HIL.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@functools.lru_cache(maxsize=None)      # the tree is read once per session, not per check
def imports(path: Path) -> list[str]:
    """Every module a file imports, lazy ones included; `if TYPE_CHECKING:` blocks are not imports."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out = []
    pkg = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hil"


@functools.lru_cache(maxsize=None)
def sources() -> list[Path]:
    return sorted(p for p in HIL.rglob("*.py") if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=None)
def known_modules() -> frozenset[str]:
    return frozenset(module_name(p) for p in sources())


def test_no_layer_imports_a_layer_to_its_right():
    bad = []
    for path in sources():
        me = layer(module_name(path))
        for target in imports(path):
            if not target.startswith("hil.") or target not in known_modules():
                continue
            other = layer(target)
            if other not in (me, "hil") and other not in ALLOWED[me]:
                bad.append(f"{module_name(path)} -> {target}")
    assert bad == []


def test_every_module_has_a_layer():
    assert {layer(module_name(p)) for p in sources()} - {"hil"} <= set(ALLOWED)


def test_the_verdict_never_touches_the_lab():
    verdict = [t for p in (HIL / "verdict").rglob("*.py") for t in imports(p)]
    assert not [t for t in verdict if t.startswith("hil.lab")]


def test_agent_code_shipped_into_l1_imports_only_what_is_shipped():
    shipped = set()
    for rel in AGENT_FILES:
        src = HIL / rel
        shipped |= {module_name(p) for p in (src.rglob("*.py") if src.is_dir() else [src])}
    missing = []
    for mod in sorted(shipped):
        path = HIL.parent / (mod.replace(".", "/") + ("/__init__.py" if (HIL.parent / mod.replace(".", "/")).is_dir()
                                                      else ".py"))
        for target in imports(path):
            top = target.split(".")[0]
            if top == "hil":
                if target in known_modules() and target not in shipped:
                    missing.append(f"{mod} -> {target}")
            elif top not in sys.stdlib_module_names and top not in AGENT_THIRD_PARTY and top != "__future__":
                missing.append(f"{mod} -> {target} (not in L1's image)")
    assert missing == []


def package_of(module: str) -> str:
    """hil.lab.assets.cache -> hil.lab.assets; a top-level module is its own package."""
    path = HIL.parent / module.replace(".", "/")
    return module if path.is_dir() else module.rsplit(".", 1)[0]


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for path in sources():
        me = package_of(module_name(path))
        for target in imports(path):
            if target in known_modules():
                other = package_of(target)
                if other != me and not me.startswith(other + ".") and not other.startswith(me + "."):
                    graph.setdefault(me, set()).add(other)
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif len(stack) < 30:
                visit(nxt, stack + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == []


def test_test_modules_outside_packages_have_unique_names():
    """pytest imports a test file in a folder without __init__.py by its bare name: two such
    files of one name stop the whole suite at collection."""
    tests = HIL.parent / "tests"
    bare = [p.name for p in tests.rglob("test_*.py") if not (p.parent / "__init__.py").exists()]
    assert sorted({n for n in bare if bare.count(n) > 1}) == []
