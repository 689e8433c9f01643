"""Imports run downwards only (../shared/DESIGN.md, the README's architecture table).

Every row of the table is ordered, highest first: cli > evaluate > simulate >
bundle / profile (siblings: neither imports the other) > kernel > pipeline > the engines
(checks > finetune > inference > models) > the ground. A module imports only from rows
below its own; the ground's modules import each other, without circles.

Every import counts, those inside functions included: one there to dodge a cycle is
still an arrow. Importing ``arcsub.a.b`` runs ``arcsub/a/__init__.py`` too, so it is an
arrow to ``a`` as well. No circle, between packages or between the modules of one
package. And a package is entered through its ``__init__`` (its front door): another
package imports ``from arcsub.models import X``, never ``from arcsub.models.default
import X``; a package's own modules import each other freely.

The checker below runs on any source tree, so the tests at the bottom show it catching
an upward arrow for every row, each circle the code once had, and a reach past a door.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import arcsub

PACKAGE = Path(arcsub.__file__).parent

# Highest first. A row's members may import the rows below it, never those above, and
# (except the ground) never each other.
ROWS: list[tuple[str, set[str]]] = [
    ("cli", {"cli"}),
    ("evaluate", {"evaluate"}),
    ("simulate", {"simulate"}),
    ("bundle / profile", {"bundle", "profile"}),
    ("kernel", {"kernel"}),
    ("pipeline", {"pipeline"}),
    ("checks", {"checks"}),
    ("finetune", {"finetune"}),
    ("inference", {"inference"}),
    ("models", {"models"}),
    (
        "ground",
        {
            "",  # arcsub/__init__.py (``__version__``)
            "augment",
            "baseline",
            "competitions",
            "config",
            "console",
            "demo",
            "encoding",
            "errors",
            "hardware",
            "io",
            "leakage",
            "prompts",
            "render",
            "selection",
            "signals",
            "submission",
            "tasks",
        },
    ),
]
GROUND = "ground"

# Arrows that break the rules today, each to be removed by the change named beside it; an
# entry whose arrow is gone fails the test too, so the list only shrinks.
# (importing module, imported module)
NOT_YET: set[tuple[str, str]] = set()


# --- the checker ---------------------------------------------------------------------


def modules_of(root: Path) -> dict[str, Path]:
    """Every module under the package folder ``root``, by dotted name below it (``""`` is
    the package itself, ``"models"`` a subpackage's ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_statements(root: Path) -> Iterator[tuple[str, str, list[str]]]:
    """``(module, the module it imports from, the names it takes)`` for each import of the
    package's own code, those inside functions included (``import arcsub.a.b``: no names)."""
    modules = modules_of(root)
    top = root.name
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = [p for p in package if p]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(package):
                        continue
                    base = package[: len(package) - (node.level - 1)]
                    module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                elif node.module == top or (node.module or "").startswith(top + "."):
                    module = node.module[len(top) + 1 :]
                else:
                    continue
                yield name, module, [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(top + "."):
                        yield name, alias.name[len(top) + 1 :], []


def imports_of(root: Path) -> dict[str, set[str]]:
    """The modules each module imports. ``from a import b`` names ``a``, and ``a.b`` when
    ``b`` is a module; a module's arrows to its own packages' ``__init__`` are left out
    (Python runs those first anyway)."""
    modules = modules_of(root)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, module, names in import_statements(root):
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for target in [module, *(f"{module}.{n}" if module else n for n in names)]:
            target = known(target)
            # importing a.b.c runs a/__init__ and a/b/__init__ first: arrows to them too
            while target:
                if target not in own:
                    graph[name].add(target)
                target = target.rpartition(".")[0]
    return graph


def part(module: str) -> str:
    return module.split(".")[0]


def row_of(module: str) -> int:
    for index, (_, members) in enumerate(ROWS):
        if part(module) in members:
            return index
    raise KeyError(f"{module!r} has no row in ROWS: place it (and in the README's table)")


def without(graph: dict[str, set[str]], arrows: set[tuple[str, str]]) -> dict[str, set[str]]:
    return {m: {t for t in ts if (m, t) not in arrows} for m, ts in graph.items()}


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    """``module -> imported`` for each import of a row above, or of a sibling in one row."""
    arrows = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if part(module) == part(target):
                continue
            mine, theirs = row_of(module), row_of(target)
            if theirs < mine or (theirs == mine and ROWS[mine][0] != GROUND):
                arrows.append(f"{module} -> {target}")
    return arrows


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles among modules, then among the top-level parts (packages and the
    ground's modules): each strongly connected set of more than one (Tarjan's algorithm)."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part(module), set()).update(part(t) for t in targets if part(t) != part(module))
    return strongly_connected(graph) + [c for c in strongly_connected(parts) if c not in strongly_connected(graph)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    edges = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def door_names(init: Path) -> set[str]:
    """The names a package's ``__init__`` lists in ``__all__``."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def past_the_door(root: Path) -> list[str]:
    """``module -> imported`` for each import, from another package, of what is inside a
    package instead of what its ``__init__`` exports: ``from P.inner import x``, ``import
    P.inner``, or ``from P import x`` when ``__all__`` leaves ``x`` out (an inner module
    included; a name imported inside a function would otherwise fail only when it runs)."""
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    found = set()
    for name, module, names in import_statements(root):
        door = part(module)
        if door not in packages or door == part(name):
            continue
        if module != door:
            found.add(f"{name} -> {module}")
            continue
        public = door_names(root / door / "__init__.py")
        found |= {f"{name} -> {door}.{n}" for n in names if n not in public}
    return sorted(found)


# --- the rules on arcsub's own code ---------------------------------------------------

GRAPH = imports_of(PACKAGE)


def test_every_module_has_a_row():
    for module in GRAPH:
        row_of(module)


def test_imports_run_downwards():
    assert upward_arrows(without(GRAPH, NOT_YET)) == []


def test_no_circles():
    assert circles(without(GRAPH, NOT_YET)) == []


def test_the_arrows_not_yet_removed_still_exist():
    assert sorted(arrow for arrow in NOT_YET if arrow[1] not in GRAPH.get(arrow[0], ())) == []


def test_other_packages_enter_through_the_init():
    assert past_the_door(PACKAGE) == []


DOORS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


@pytest.mark.parametrize("door", DOORS)
def test_every_name_a_door_lists_is_there_and_the_door_pulls_no_engine(door):
    """Importing the door alone brings in neither torch nor vLLM, and each name in
    ``__all__`` is what the door promises, once the package's modules are all loaded too
    (the bundle's door loads its names on first use: a module of the same name, imported
    first, would hide one)."""
    code = (
        "import importlib, pkgutil, sys, types\n"
        f"door = importlib.import_module('arcsub.{door}')\n"
        "heavy = sorted(m for m in ('torch', 'vllm', 'transformers', 'peft') if m in sys.modules)\n"
        "for inner in pkgutil.iter_modules(door.__path__):\n"
        "    importlib.import_module(f'{door.__name__}.{inner.name}')\n"
        "wrong = [n for n in getattr(door, '__all__', []) if not hasattr(door, n)\n"
        "         or isinstance(getattr(door, n), types.ModuleType) and hasattr(getattr(door, n), n)]\n"
        "print(heavy, wrong)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] []"


def test_the_checker_sees_relative_absolute_and_function_level_imports():
    assert GRAPH["checks.context_window"] >= {"finetune", "models", "console"}
    assert "models" in GRAPH["pipeline"]  # a function-level import counts


# --- the checker catches what it must: synthetic trees -------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """An ``arcsub`` package under ``root`` with ``files`` (path: source); every folder a
    package."""
    package = root / "arcsub"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        for folder in [path.parent, *path.parent.parents]:
            if folder == root:
                break
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").touch()
        path.write_text(source)
    return package


def _file(member: str) -> str:
    return f"{member}/inner.py" if member not in ROWS[-1][1] else f"{member}.py"


def _module(member: str) -> str:
    return f"{member}.inner" if member not in ROWS[-1][1] else member


# one upward arrow per pair of neighbouring rows, from an import inside a function
NEIGHBOURS = [(min(ROWS[i + 1][1] - {""}), min(ROWS[i][1])) for i in range(len(ROWS) - 1)]


@pytest.mark.parametrize(("lower", "upper"), NEIGHBOURS, ids=[f"{lo}->{up}" for lo, up in NEIGHBOURS])
def test_the_checker_refuses_an_upward_arrow_for_every_row(tmp_path, lower, upper):
    root = write_tree(
        tmp_path,
        {
            _file(lower): f"def f():\n    from arcsub.{_module(upper)} import g\n",
            _file(upper): "def g():\n    pass\n",
        },
    )
    assert upward_arrows(imports_of(root)) == [
        f"{_module(lower)} -> {p}" for p in sorted({_module(upper), part(_module(upper))})
    ]


def test_the_checker_refuses_siblings_importing_each_other(tmp_path):
    root = write_tree(tmp_path, {"bundle/a.py": "from ..profile import b\n", "profile/b.py": ""})
    assert upward_arrows(imports_of(root)) == ["bundle.a -> profile", "bundle.a -> profile.b"]


def test_the_ground_imports_itself_downwards(tmp_path):
    root = write_tree(tmp_path, {"tasks.py": "from .errors import E\n", "errors.py": "E = 1\n"})
    assert upward_arrows(imports_of(root)) == []
    assert circles(imports_of(root)) == []


# The circles the code had when issue 21 was filed, each in small.
TODAYS_CIRCLES = {
    "kernel ⇄ profile": {
        "kernel/__init__.py": "from .run import run\n",
        "kernel/run.py": "def run():\n    from ..profile import measure\n",
        "kernel/profiles.py": "",
        "profile/__init__.py": "from ..kernel.profiles import P\n\ndef measure():\n    pass\n",
    },
    "bundle ⇄ simulate": {
        "bundle/check.py": "from ..simulate.simulation import simulate\n",
        "simulate/simulation.py": "def simulate():\n    pass\n",
        "simulate/bundle.py": "from ..bundle.build import MANIFEST\n",
        "bundle/build.py": "MANIFEST = 'bundle.json'\n",
    },
    "bundle.build ⇄ bundle.push": {
        "bundle/build.py": "from .push import kaggle_config_dirs\nMANIFEST = 1\n",
        "bundle/push.py": "def kaggle_config_dirs():\n    from .build import MANIFEST\n",
    },
    "models.default ⇄ models.pretrained": {
        "models/default.py": "def f():\n    from .pretrained import merge\n",
        "models/pretrained.py": "from .default import DEFAULT_NAME\n",
    },
}


@pytest.mark.parametrize("files", TODAYS_CIRCLES.values(), ids=TODAYS_CIRCLES.keys())
def test_the_checker_finds_each_circle_of_issue_21(tmp_path, files):
    graph = imports_of(write_tree(tmp_path, files))
    assert circles(graph) != []
    if "models/default.py" not in files and "bundle/push.py" not in files:
        assert upward_arrows(graph) != []  # between packages it is an arrow up, too


def test_the_checker_refuses_a_reach_past_the_door(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "models/__init__.py": "from . import facts\nfrom .default import X\n__all__ = ['X', 'facts']\n",
            "models/default.py": "X = 1\n",
            "models/facts.py": "",
            "models/loading.py": "from .default import X\n",  # its own package: fine
            "kernel/run.py": "from ..models import X\nfrom ..models.default import X\n",
            "kernel/plan.py": "from arcsub.models import default\n",  # a module the door does not name
            "kernel/stack.py": "def f():\n    import arcsub.models.default\n",
            "kernel/inputs.py": "from ..models import facts\n",  # a module the door names: fine
            "kernel/probe.py": "def f():\n    from ..models import Y\n",  # not in __all__
        },
    )
    assert past_the_door(root) == [
        "kernel.plan -> models.default",
        "kernel.probe -> models.Y",
        "kernel.run -> models.default",
        "kernel.stack -> models.default",
    ]
