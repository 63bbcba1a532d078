"""Imports flow one way: from the face down to the base (docs: DESIGN.md, "Layers of the system").

Every module file under src/l2dynamics is parsed (no import is executed), and every ``import`` and
``from … import`` statement is collected — at module level, inside functions and under
``if TYPE_CHECKING:`` alike, since a lazy import is still a dependency — together with
``importlib.import_module("…")`` calls on a literal name. A violation is reported as
``module -> imported  (file:line)``.

Floors, top to bottom (a module may import its own floor and the floors below it)::

    6 face         cli · l2dynamics (the package __init__, and __main__) · integrations
    5 studies      studies (incl. reproduce, suites)
    4 sweep        sweep
    3 engine       train
    2 components   probes · l2 · models · data · theory
    1 services     store · analysis · config · report
    0 base         errors · resources · losses · provenance · names

Named rules, checked on their own so that a failure says which rule broke: probes, theory,
analysis, l2, store and report never import the engine, the studies or the CLI; the engine never
imports the studies or the CLI; the report imports neither the store nor the studies; nothing
below the face imports the package face ``l2dynamics`` itself (``import l2dynamics`` or
``from l2dynamics import X``), which would run the public API's imports from inside the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "l2dynamics"
SRC = Path(__file__).resolve().parents[1] / "src"

FLOORS: dict[str, int] = {
    "cli": 6, "": 6, "__main__": 6, "integrations": 6,
    "studies": 5, "suites": 5,
    "sweep": 4,
    "train": 3,
    "probes": 2, "l2": 2, "models": 2, "data": 2, "theory": 2,
    "store": 1, "analysis": 1, "config": 1, "report": 1,
    "errors": 0, "resources": 0, "losses": 0, "provenance": 0, "names": 0,
}
"""Floor of each top-level part of the package ("" is the package face, ``__init__``)."""

ENGINE, STUDIES, CLI = f"{PACKAGE}.train", f"{PACKAGE}.studies", f"{PACKAGE}.cli"
RULES: dict[str, tuple[str, ...]] = {
    **{part: (ENGINE, STUDIES, CLI)
       for part in ("probes", "theory", "analysis", "l2", "store", "report")},
    "train": (STUDIES, CLI),
}
RULES["report"] += (f"{PACKAGE}.store",)
"""Top-level part → the packages it must never import (its submodules included)."""


# --- the scanner ---------------------------------------------------------------------------------


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> Iterator[tuple[str, int, bool]]:
    """(imported name, line, certain) for every import in `source` of `module`; relative imports
    are resolved against `module`. ``from X import a`` yields X (certain) and X.a (not certain:
    a submodule, or just an attribute of X)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, True
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno, True
            for alias in node.names:
                if alias.name != "*":
                    yield f"{target}.{alias.name}", node.lineno, False
        elif (isinstance(node, ast.Call) and _is_import_module(node.func) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value, node.lineno, True


def _is_import_module(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def part_of(module: str) -> str:
    """The top-level part of a package module: l2dynamics.train.loop → "train"."""
    return module.split(".")[1] if "." in module else ""


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def internal_imports(root: Path = SRC) -> dict[tuple[str, str], str]:
    """(module, imported l2dynamics module) → "file:line" of its first import, over every
    module file under `root`/l2dynamics."""
    paths = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    found: dict[tuple[str, str], tuple[str, int]] = {}
    for path in paths:
        module = module_name(path, root)
        text = path.read_text(encoding="utf-8")
        for target, line, certain in imports_of(text, module, path.name == "__init__.py"):
            if not within(target, PACKAGE) or not (certain or target in modules):
                continue
            where = (path.relative_to(root).as_posix(), line)
            key = (module, target)
            found[key] = min(found.get(key, where), where)
    return {key: f"src/{file}:{line}" for key, (file, line) in sorted(found.items())}


def violations(root: Path = SRC) -> dict[str, list[str]]:
    """Rule → "module -> imported  (file:line)" lines breaking it."""
    found: dict[str, list[str]] = {"named rules": [], "face": [], "floors": [], "unplaced": []}
    placed: set[str] = set()
    for (module, target), where in internal_imports(root).items():
        source, dest = part_of(module), part_of(target)
        line = f"{module} -> {target}  ({where})"
        if source not in FLOORS:
            if source not in placed:
                found["unplaced"].append(f"{module}: {source!r} has no floor in FLOORS")
                placed.add(source)
            continue
        if any(within(target, banned) for banned in RULES.get(source, ())):
            found["named rules"].append(line)
        if target == PACKAGE:
            if source not in ("", "cli"):
                found["face"].append(line)
        elif dest not in FLOORS:
            found["unplaced"].append(f"{line}: {dest!r} has no floor in FLOORS")
        elif FLOORS[dest] > FLOORS[source]:
            found["floors"].append(line)
    return found


# --- the checks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def found() -> dict[str, list[str]]:
    return violations()


@pytest.mark.parametrize("rule", ["named rules", "face", "floors", "unplaced"])
def test_imports_flow_one_way(found, rule):
    lines = found[rule]
    assert not lines, f"{len(lines)} import(s) against the layering ({rule}):\n" + "\n".join(
        lines)


def test_scanner_sees_lazy_relative_and_dynamic_imports(tmp_path):
    """The scanner itself: imports inside functions, under TYPE_CHECKING, relative ones and
    import_module calls are all found (a scanner that missed them would pass vacuously)."""
    pkg = tmp_path / PACKAGE
    (pkg / "probes").mkdir(parents=True)
    (pkg / "train").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "probes" / "__init__.py").write_text("from typing import TYPE_CHECKING\n"
                                                "if TYPE_CHECKING:\n"
                                                "    from l2dynamics.studies import x\n")
    (pkg / "probes" / "lazy.py").write_text(
        "import importlib\n"
        "def f():\n"
        "    from ..train import loop\n"
        "    import l2dynamics\n"
        "    return importlib.import_module('l2dynamics.cli')\n")
    (pkg / "train" / "ok.py").write_text("from l2dynamics.probes import lazy\n"
                                         "from . import ok\n")
    found = violations(tmp_path)
    named = found["named rules"]
    assert [line.split("  (")[0] for line in named] == [
        "l2dynamics.probes -> l2dynamics.studies",
        "l2dynamics.probes.lazy -> l2dynamics.cli",
        "l2dynamics.probes.lazy -> l2dynamics.train",
    ], named
    assert [line.split("  (")[0] for line in found["face"]] == [
        "l2dynamics.probes.lazy -> l2dynamics"]
    assert any("lazy.py:3" in line for line in named)
    assert not any(line.startswith("l2dynamics.train.ok") for rule in found.values()
                   for line in rule)


def test_every_module_file_is_scanned():
    """The walk covers the whole package (a wrong root would find nothing and pass)."""
    modules = {module for module, _ in internal_imports()}
    for expected in ("l2dynamics.train.loop", "l2dynamics.probes.metrics",
                     "l2dynamics.sweep.local"):
        assert expected in modules


def test_sweep_executors_do_not_import_each_other():
    """The local and Ray executors share the ledger; only the runner chooses between them."""
    edges = set(internal_imports())
    for a, b in (("local", "ray_executor"), ("ray_executor", "local")):
        assert (f"{PACKAGE}.sweep.{a}", f"{PACKAGE}.sweep.{b}") not in edges
