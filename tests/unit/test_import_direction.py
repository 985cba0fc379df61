"""module_utils/fleet is a package per domain in one-way layers (docs/development.md, Architecture).

Read with ast, never imported: a module imports only from its own layer or the ones below it, no two modules
import each other (directly or round a loop), no module imports another's `_private` name or imports a sibling
late (inside a function, the usual way round a cycle), and nothing in the repository's Python still imports
the old flat `ansible.module_utils.fleet_*` names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "ansible.module_utils.fleet"
# Lowest first: a package may import from itself and from those before it.
LAYERS = ("core", "state", "alembic", "schema", "review", "backup", "ops", "report")
OLD_FLAT_PREFIX = "ansible.module_utils.fleet_"
PYTHON_TREES = ("library", "module_utils", "plugins", "tests", "bench", "scripts")


@dataclass(frozen=True)
class Import:
    """One `import` / `from ... import` of a module of the package, as written in a file."""

    importer: str  # dotted module name of the importing file
    module: str  # the module of ours it names (`from a.b import c` where c is a module: a.b.c)
    names: tuple[str, ...]  # what `from` takes from it; () for a plain import or a module taken whole
    line: int
    top_level: bool  # at module level (or in a module-level try/if), not inside a function or class


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under root (module_utils/fleet), by dotted name."""
    return {module_name(root, path): path for path in sorted(root.rglob("*.py"))}


def _resolve(importer: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes outside any function or class body."""
    found: set[int] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        found.add(id(node))
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)))
    return found


def imports_of(importer: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The imports of our own modules in one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = _top_level_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    yield Import(importer, alias.name, (), node.lineno, id(node) in top)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(importer, node, path.name == "__init__.py")
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            submodules = [alias.name for alias in node.names if "%s.%s" % (source, alias.name) in modules]
            names = tuple(alias.name for alias in node.names if alias.name not in submodules)
            for name in submodules:
                yield Import(importer, "%s.%s" % (source, name), (), node.lineno, id(node) in top)
            if names:
                yield Import(importer, source, names, node.lineno, id(node) in top)


def all_imports(root: Path) -> list[Import]:
    modules = package_modules(root)
    return [item for name, path in modules.items() for item in imports_of(name, path, modules)]


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[3]) if len(parts) > 3 and parts[3] in LAYERS else None


def upward_imports(imports: list[Import]) -> list[str]:
    found = []
    for item in imports:
        mine, theirs = layer_of(item.importer), layer_of(item.module)
        if mine is not None and theirs is not None and theirs > mine:
            found.append("%s:%d imports %s, a higher layer (%s above %s)" % (item.importer, item.line, item.module, LAYERS[theirs], LAYERS[mine]))
    return found


def unknown_packages(modules: dict[str, Path]) -> list[str]:
    """Modules outside the known layers: a new package has to be given its place in LAYERS."""
    return [name for name in modules if name != PACKAGE and layer_of(name) is None]


def cycles(imports: list[Import]) -> list[list[str]]:
    """Each import cycle between modules once, as the path round it (Tarjan's strongly connected components)."""
    graph: dict[str, set[str]] = {}
    for item in imports:
        if item.module != item.importer:
            graph.setdefault(item.importer, set()).add(item.module)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def private_imports(imports: list[Import]) -> list[str]:
    return [
        "%s:%d imports %s from %s" % (item.importer, item.line, name, item.module)
        for item in imports
        if item.module != item.importer
        for name in item.names
        if name.startswith("_")
    ]


def late_imports(imports: list[Import]) -> list[str]:
    return ["%s:%d imports %s inside a function" % (item.importer, item.line, item.module) for item in imports if not item.top_level]


def python_files(repo: Path) -> Iterator[Path]:
    """The repository's Python: *.py under the trees, and the scripts whose first line runs python."""
    for tree in PYTHON_TREES:
        for path in sorted((repo / tree).rglob("*")):
            if not path.is_file() or ".venv" in path.parts or path.is_symlink():
                continue
            if path.suffix == ".py" or (path.suffix == "" and path.read_bytes()[:64].startswith(b"#!") and b"python" in path.read_bytes()[:64]):
                yield path


def old_flat_imports(repo: Path) -> list[str]:
    found = []
    for path in python_files(repo):
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                named = [node.module or ""] + ["%s.%s" % (node.module, alias.name) for alias in node.names]
            else:
                continue
            if any(name.startswith(OLD_FLAT_PREFIX) for name in named):
                found.append("%s:%d" % (path.relative_to(repo), node.lineno))
    return found


# -- the tests ---------------------------------------------------------------------
ROOT = REPO / "module_utils" / "fleet"


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    assert (ROOT / "__init__.py").is_file(), "module_utils/fleet is the package of the shared code (docs/development.md)"
    return all_imports(ROOT)


def test_every_directory_is_a_package_in_a_known_layer() -> None:
    missing = [str(d.relative_to(REPO)) for d in [ROOT, *ROOT.rglob("*")] if d.is_dir() and d.name != "__pycache__" and not (d / "__init__.py").is_file()]
    assert missing == [], "AnsiballZ ships only packages: add an __init__.py to %s" % missing
    assert unknown_packages(package_modules(ROOT)) == [], "give each new package its place in LAYERS (and docs/development.md)"
    assert not list((REPO / "module_utils").glob("fleet_*.py")), "the flat module_utils/fleet_*.py files are gone: the code lives in module_utils/fleet/"


def test_no_module_imports_a_higher_layer(imports: list[Import]) -> None:
    assert upward_imports(imports) == [], "lower layers never import higher ones: %s" % " < ".join(LAYERS)


def test_no_import_cycle(imports: list[Import]) -> None:
    assert cycles(imports) == [], "move what both sides need down a layer"


def test_no_private_name_crosses_modules(imports: list[Import]) -> None:
    assert private_imports(imports) == [], "make the name public (and give it a docstring) or move it where it is used"


def test_no_late_import_of_the_package(imports: list[Import]) -> None:
    assert late_imports(imports) == [], "import at the top of the module; a cycle is broken by moving code down a layer"


def test_nothing_imports_the_old_flat_names() -> None:
    assert old_flat_imports(REPO) == [], "import ansible.module_utils.fleet.<package>.<module> instead"


# -- the checks themselves, on a made-up tree ---------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "fleet"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_each_kind_of_bad_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/common.py": "from ansible.module_utils.fleet.ops.operations import run\n",
            "ops/__init__.py": "",
            "ops/operations.py": "from ansible.module_utils.fleet.ops.drift import _helper\nrun = 1\n",
            "ops/drift.py": "def f():\n    from ansible.module_utils.fleet.ops import operations\n_helper = 1\n",
        },
    )
    found = all_imports(root)
    assert upward_imports(found) == [
        "ansible.module_utils.fleet.core.common:1 imports ansible.module_utils.fleet.ops.operations, a higher layer (ops above core)",
    ]
    assert cycles(found) == [["ansible.module_utils.fleet.ops.drift", "ansible.module_utils.fleet.ops.operations"]]
    assert private_imports(found) == ["ansible.module_utils.fleet.ops.operations:1 imports _helper from ansible.module_utils.fleet.ops.drift"]
    assert late_imports(found) == ["ansible.module_utils.fleet.ops.drift:2 imports ansible.module_utils.fleet.ops.operations inside a function"]


def test_the_old_flat_names_are_caught(tmp_path: Path) -> None:
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "m.py").write_text("from ansible.module_utils.fleet_common import FleetError\n")
    assert old_flat_imports(tmp_path) == ["library/m.py:1"]
