"""The package's layers: `nodeodm/` (the NodeODM dialect) imports nothing else of clusterodm but
the native extension; `cluster/` (the control-plane core) imports only itself, `nodeodm/` and the
extension. The proxy, pipeline, autoscaler, admin and the composition root (`services`) sit above
and hand the core the few objects it uses, so the core can be tested and shared (replicas, a
second front end) without them. Only the composition root and the entry points know `Cluster`
(`services`): every other component takes the few objects it uses. Every import counts: module
level, TYPE_CHECKING, in functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "clusterodm"
SUBPACKAGES = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
MODULES = {p.stem for p in PACKAGE.glob("*.py")} | SUBPACKAGES | {"_native"}
ALLOWED = {
    "nodeodm": {"nodeodm", "_native"},
    "cluster": {"cluster", "nodeodm", "_native"},
}


COMPOSITION_ROOT = "services"
KNOW_THE_ROOT = {
    "clusterodm.services": "the composition root itself",
    "clusterodm.main": "the entry point: builds the Cluster and runs it",
    "clusterodm.demo": "the `clusterodm demo` entry point: an Extension attached to the Cluster",
}
"""Modules that may import `clusterodm.services` (and so `Cluster`), and why."""
NOT_YET_CONVERTED: dict[str, str] = {}
"""Modules that still take the whole `Cluster`, each with the reason; remove an entry once the
module takes what it uses (the test fails on an entry that no longer imports the root)."""


def imported_parts(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, first component under clusterodm) of every clusterodm import in `tree`."""
    found: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from clusterodm import x` names a part only when x is one of its modules.
            if base == "clusterodm":
                names = [f"clusterodm.{a.name}" for a in node.names if a.name in MODULES]
            else:
                names = [base]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "clusterodm" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def module_name(path: Path) -> str:
    return "clusterodm." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def layer_files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them(layer: str) -> None:
    upward = []
    for path in layer_files(layer):
        module = module_name(path)
        for line, part in imported_parts(ast.parse(path.read_text(), str(path)), module):
            if part not in ALLOWED[layer]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports clusterodm.{part}")
    assert not upward, f"{layer}/ reaches up:\n" + "\n".join(upward)


def test_the_walk_sees_every_kind_of_import() -> None:
    """The checker itself: module-level, TYPE_CHECKING, function-level and relative imports."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import clusterodm.proxy.app\n"
        "from clusterodm import services, __version__\n"
        "if TYPE_CHECKING:\n"
        "    from clusterodm.pipeline import Pipeline\n"
        "def f():\n"
        "    from ..autoscale import Autoscaler\n"
        "    from . import nodes\n"
    )
    parts = [part for _, part in imported_parts(ast.parse(source), "clusterodm.cluster.mod")]
    assert parts == ["proxy", "services", "pipeline", "autoscale", "cluster"]
    assert layer_files("cluster") and layer_files("nodeodm")


def test_only_the_entry_points_know_the_cluster() -> None:
    """A component that imports `services` to take the whole `Cluster` hides what it uses."""
    importers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        parts = imported_parts(ast.parse(path.read_text(), str(path)), module)
        if any(part == COMPOSITION_ROOT for _, part in parts):
            importers.add(module)
    allowed = set(KNOW_THE_ROOT) | set(NOT_YET_CONVERTED)
    assert not importers - allowed, (
        f"import the Cluster (take the few objects used instead): {importers - allowed}"
    )
    converted = set(NOT_YET_CONVERTED) - importers
    assert not converted, f"no longer import the Cluster: remove from NOT_YET_CONVERTED: {converted}"
