"""Imports run downwards only (../shared/DESIGN.md): the bottom of the model side imports
no engine, and the engines stack checks > finetune > inference > models. Every import
counts, those inside functions included: one there to dodge a cycle is still an arrow."""

import ast
from pathlib import Path

import arcsub

PACKAGE = Path(arcsub.__file__).parent
# Lowest first; a package may import only those before it (and the ground below them all).
ENGINES = ["models", "inference", "finetune", "checks"]
ABOVE_THE_ENGINES = {"pipeline", "cli", "kernel", "simulate", "profile", "bundle", "evaluate", "demo"}


def imported_parts(path: Path) -> set[str]:
    """The first part under ``arcsub`` of every arcsub module ``path`` imports."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    package = parts[:-1]  # the package a relative import starts from
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            names = (node.module or "").split(".") if node.module else [a.name for a in node.names]
            found.add((*base, *names)[0] if (*base, *names) else "")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("arcsub."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("arcsub.")}
    return found


def forbidden_for(part: str) -> set[str]:
    if part in ENGINES:
        return set(ENGINES[ENGINES.index(part) + 1 :]) | ABOVE_THE_ENGINES
    if part in ABOVE_THE_ENGINES:
        return set()
    return set(ENGINES) | ABOVE_THE_ENGINES  # the ground and the pure data modules


def test_imports_run_downwards():
    arrows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).with_suffix("").parts[0]
        for target in sorted(imported_parts(path) & forbidden_for(own)):
            arrows.append(f"{path.relative_to(PACKAGE)} -> {target}")
    assert arrows == []


def test_the_checker_sees_relative_and_absolute_imports():
    assert imported_parts(PACKAGE / "checks" / "context_window.py") >= {"finetune", "models", "console"}
    assert "models" in imported_parts(PACKAGE / "pipeline.py")  # a function-level import counts
