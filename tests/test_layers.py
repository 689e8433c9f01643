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
NOT_YET: set[tuple[str, str]] = {
    # kernel ⇄ profile: profile mode moves to the profiler and the competition profiles
    # to the ground (issue 21, the other engineer's part).
    ("kernel.run", "profile"),
}


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


def imports_of(root: Path) -> dict[str, set[str]]:
    """The modules each module imports, those inside functions included. ``from a
    import b`` names ``a``, and ``a.b`` when ``b`` is a module; a module's arrows to its
    own packages' ``__init__`` are left out (Python runs those first anyway)."""
    modules = modules_of(root)
    top = root.name

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = [p for p in package if p]
        targets: set[str] = set()
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
                targets.add(module)
                for alias in node.names:
                    submodule = f"{module}.{alias.name}" if module else alias.name
                    if submodule in modules:
                        targets.add(submodule)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(top + "."):
                        targets.add(alias.name[len(top) + 1 :])
        resolved = set()
        for target in targets:
            target = known(target)
            # importing a.b.c runs a/__init__ and a/b/__init__ first: arrows to them too
            while target:
                resolved.add(target)
                target = target.rpartition(".")[0]
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        graph[name] = resolved - own
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


def past_the_door(graph: dict[str, set[str]], root: Path) -> list[str]:
    """``module -> imported`` for each import, from another package, of a package's inner
    module instead of its ``__init__``."""
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if part(target) in packages and "." in target and part(target) != part(module)
    ]


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


# Imports past a door today; step by step each becomes an import of the package itself.
PAST_THE_DOOR_TODAY: set[str] = {
    "bundle.build -> kernel.inputs",
    "bundle.build -> kernel.profiles",
    "bundle.build -> models.default",
    "bundle.check -> models.default",
    "bundle.image_probes -> inference.vllm_backend",
    "bundle.image_probes -> kernel.stack",
    "bundle.image_probes -> models.loading",
    "bundle.manifest -> kernel.inputs",
    "bundle.replica -> models.default",
    "bundle.wheelset -> models.default",
    "checks.context_prompts -> models.synthetic_text",
    "checks.context_window -> models.config_facts",
    "checks.context_window -> models.context",
    "checks.context_window -> models.loading",
    "checks.fp16 -> models.inspection",
    "checks.fp16 -> models.loading",
    "cli.bundle -> bundle.build",
    "cli.bundle -> bundle.check",
    "cli.bundle -> bundle.image_list",
    "cli.bundle -> bundle.manifest",
    "cli.bundle -> bundle.over_image",
    "cli.bundle -> bundle.wheelset",
    "cli.compare -> evaluate.compare",
    "cli.compare -> evaluate.compare_plot",
    "cli.data -> models.loading",
    "cli.evaluate -> evaluate.budget",
    "cli.evaluate -> evaluate.run",
    "cli.finetune -> checks.fp16",
    "cli.finetune -> finetune.offline",
    "cli.finetune -> finetune.sources",
    "cli.infer -> models.loading",
    "cli.model -> checks.context_window",
    "cli.model -> checks.fp16",
    "cli.model -> finetune.adapters",
    "cli.model -> models.chat_template",
    "cli.model -> models.context",
    "cli.model -> models.inspection",
    "cli.model -> models.pretrained",
    "cli.model -> models.replicas",
    "cli.profile -> kernel.profiles",
    "cli.profile -> profile.cost_model",
    "cli.profile -> profile.measure",
    "cli.profile -> profile.project",
    "cli.profile -> profile.step_fit",
    "cli.push -> bundle.push",
    "cli.simulate -> bundle.manifest",
    "evaluate.budget -> kernel.profiles",
    "evaluate.run -> kernel.profiles",
    "evaluate.run -> models.config_facts",
    "evaluate.run -> models.default",
    "evaluate.run -> simulate.runner",
    "evaluate.run -> simulate.simulation",
    "evaluate.run -> simulate.tree",
    "finetune.cache -> models.default",
    "finetune.model -> inference.backend",
    "finetune.model -> models.loading",
    "finetune.model -> models.pretrained",
    "finetune.ttft -> models.loading",
    "inference.run -> models.loading",
    "inference.vllm_backend -> models.config_facts",
    "inference.vllm_backend -> models.loading",
    "kernel.plan -> models.config_facts",
    "kernel.probe -> inference.airv",
    "kernel.probe -> inference.scoring",
    "kernel.probe -> models.loading",
    "kernel.run -> models.loading",
    "kernel.worker -> finetune.model",
    "kernel.worker -> models.loading",
    "pipeline -> models.loading",
    "profile -> kernel.profiles",
    "profile.analytic -> models.config_facts",
    "profile.flops -> models.config_facts",
    "profile.measure -> inference.backend",
    "profile.measure -> models.config_facts",
    "profile.measure -> models.loading",
    "profile.measure -> models.registry",
    "profile.measure -> models.replicas",
    "profile.measure -> models.synthetic_text",
    "profile.project -> kernel.profiles",
    "profile.step_fit -> models.registry",
    "simulate.bundle -> bundle.build",
    "simulate.bundle -> bundle.image_list",
    "simulate.bundle -> bundle.manifest",
    "simulate.bundle -> bundle.replica",
    "simulate.bundle -> bundle.venv",
    "simulate.bundle -> models.default",
    "simulate.simulation -> bundle.venv",
    "simulate.simulation -> kernel.profiles",
    "simulate.smoke -> bundle.check",
    "simulate.tree -> bundle.manifest",
}


@pytest.mark.parametrize("rule", ["none new", "none gone"])
def test_other_packages_enter_through_the_init(rule):
    found = set(past_the_door(GRAPH, PACKAGE))
    if rule == "none new":
        assert sorted(found - PAST_THE_DOOR_TODAY) == []
    else:
        assert sorted(PAST_THE_DOOR_TODAY - found) == []  # fixed: take it off the list


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
            "models/__init__.py": "from .default import X\n",
            "models/default.py": "X = 1\n",
            "models/loading.py": "from .default import X\n",  # its own package: fine
            "kernel/run.py": "from ..models import X\nfrom ..models.default import X\n",
            "kernel/plan.py": "from arcsub.models import default\n",  # a module, not a name
        },
    )
    assert past_the_door(imports_of(root), root) == ["kernel.plan -> models.default", "kernel.run -> models.default"]
