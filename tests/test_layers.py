"""The layers of batchrun: no import runs back up them, and third-party I/O stays in its package.

A module may import its own package and anything in a lower layer, never a higher one; packages
on one line do not import each other. Every import counts: at the top, inside a function, and
under TYPE_CHECKING. The checker reads the source (AST) and imports nothing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "batchrun"

# Highest first. cli starts the dashboard by its script's path only, never by importing it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("batchrun.cli", "batchrun.dashboard"),
    ("batchrun",),  # the package's own __init__.py: the public Python API's names
    ("batchrun.workspace",),  # what those names do: open a store, run, resume, read frames
    ("batchrun.teams", "batchrun.grading"),
    ("batchrun.analytics", "batchrun.export", "batchrun.reprice"),
    ("batchrun.run",),
    ("batchrun.plan",),
    ("batchrun.api",),
    ("batchrun.store",),
    ("batchrun.jobs",),
    ("batchrun.sim",),  # the simulator; batchrun.run.launch starts it
    ("batchrun.pricing", "batchrun.budgets"),
    ("batchrun.catalog", "batchrun.config"),
    ("batchrun.exceptions", "batchrun.status", "batchrun.redaction", "batchrun.interrupts"),
)
# Third-party packages only one package may import.
OWNED = {
    "sqlalchemy": "batchrun.store",
    "alembic": "batchrun.store",
    "anthropic": "batchrun.api",
    "aiohttp": "batchrun.api",
    "httpx": "batchrun.api",
    "httpx2": "batchrun.api",
}
_LAYER_OF = {unit: depth for depth, line in enumerate(LAYERS) for unit in line}


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    path: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported}: {self.rule}"


def module_name(path: str) -> str:
    """``batchrun/store/x.py`` -> ``batchrun.store.x``; a package's __init__ is the package."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    """The layer table's entry a module belongs to: the longest one naming it or a parent."""
    if module == "batchrun":
        return module
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in _LAYER_OF:
            return ".".join(parts[:end])
    return None


def known_modules() -> frozenset[str]:
    """Every module and package under batchrun/, by dotted name."""
    return frozenset(module_name(str(p.relative_to(ROOT))) for p in PACKAGE.rglob("*.py"))


def imports(tree: ast.AST, package: str, modules: frozenset[str]) -> list[tuple[int, str]]:
    """Every (line, imported module) in ``tree``, wherever it sits, relative ones resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            found += [(node.lineno, _from_target(base, a.name, modules)) for a in node.names]
    return list(dict.fromkeys(found))  # from sqlalchemy import a, b: one import of sqlalchemy


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from`` import names; ``package`` is where the importing module sits."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, node.module] if node.module else parts)


def _from_target(base: str, name: str, modules: frozenset[str]) -> str:
    """``from batchrun import analytics`` imports the module batchrun.analytics."""
    return f"{base}.{name}" if f"{base}.{name}" in modules else base


def check_source(path: str, source: str, modules: frozenset[str]) -> list[Violation]:
    """The violations of the module at ``path`` (relative to the repository) holding ``source``."""
    module = module_name(path)
    own = unit_of(module)
    if own is None:
        return [Violation(path, 1, module, "the module is in no layer; add it to LAYERS")]
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = imports(ast.parse(source, path), package, modules)
    return [
        Violation(path, line, imported, rule)
        for line, imported in found
        if (rule := _broken_rule(own, imported)) is not None
    ]


def _broken_rule(own: str, imported: str) -> str | None:
    top = imported.partition(".")[0]
    if top in OWNED and own != OWNED[top]:
        return f"only {_short(OWNED[top])} may import {top}"
    if top != "batchrun":
        return None
    target = unit_of(imported)
    if target is None:
        return f"{imported} is in no layer; add it to LAYERS"
    if target == own or _LAYER_OF[target] > _LAYER_OF[own]:
        return None
    where = "the same layer" if _LAYER_OF[target] == _LAYER_OF[own] else "a higher layer"
    return f"{_short(own)} may not import {_short(target)} ({where})"


def _short(unit: str) -> str:
    return unit.removeprefix("batchrun.")


def check_package() -> list[Violation]:
    """The violations of every module under batchrun/."""
    modules = known_modules()
    found: list[Violation] = []
    for file in sorted(PACKAGE.rglob("*.py")):
        path = str(file.relative_to(ROOT))
        found += check_source(path, file.read_text(encoding="utf-8"), modules)
    return found


def test_no_import_breaks_the_layers() -> None:
    violations = check_package()
    assert not violations, "\n".join(map(str, violations))


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        (
            "batchrun/store/x.py",
            '"""Planted."""\n\nfrom batchrun.run.runner import Runner\n',
            "batchrun/store/x.py:3 imports batchrun.run.runner: "
            "store may not import run (a higher layer)",
        ),
        (
            "batchrun/cli/y.py",
            "import os\nimport anthropic\n",
            "batchrun/cli/y.py:2 imports anthropic: only api may import anthropic",
        ),
        (
            "batchrun/grading/judge.py",
            "def f():\n    from batchrun.cli import run\n",
            "batchrun/grading/judge.py:2 imports batchrun.cli.run: "
            "grading may not import cli (a higher layer)",
        ),
        (
            "batchrun/teams/z.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlalchemy.orm\n",
            "batchrun/teams/z.py:3 imports sqlalchemy.orm: only store may import sqlalchemy",
        ),
        (
            "batchrun/cli/w.py",
            "from batchrun import dashboard\n",
            "batchrun/cli/w.py:1 imports batchrun.dashboard: "
            "cli may not import dashboard (the same layer)",
        ),
        (
            "batchrun/jobs/v.py",
            "from ..store import Store\n",
            "batchrun/jobs/v.py:1 imports batchrun.store: "
            "jobs may not import store (a higher layer)",
        ),
        (
            "batchrun/newpkg/u.py",
            "import os\n",
            "batchrun/newpkg/u.py:1 imports batchrun.newpkg.u: "
            "the module is in no layer; add it to LAYERS",
        ),
    ],
)
def test_a_planted_violation_is_reported(path: str, source: str, expected: str) -> None:
    assert [str(v) for v in check_source(path, source, known_modules())] == [expected]


def test_allowed_imports_pass() -> None:
    source = (
        "import orjson\n"
        "from batchrun import analytics\n"
        "from batchrun.store import Store\n"
        "from batchrun.run.runner import Runner\n"
        "from . import views\n"
    )
    assert check_source("batchrun/dashboard/app.py", source, known_modules()) == []
