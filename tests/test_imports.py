"""Import hygiene: the library's import graph (read from the source, imports inside functions
included) has no cycle, ``import jaxcoop`` stays light, and no library module needs the
command line."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxcoop"


def module_name(path: Path) -> str:
    """``jaxcoop/algorithms/ppi/model.py`` -> ``algorithms.ppi.model``; a package's
    ``__init__.py`` -> the package (``algorithms.ppi``)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
FILES.pop("")  # jaxcoop/__init__.py: the public API, which imports everything
MODULES = sorted(FILES)


def imports_of(module: str) -> set[str]:
    """The ``jaxcoop`` modules (dotted below ``jaxcoop``; a package counts as its
    ``__init__``) that ``module`` imports anywhere in its source: for ``from a.b import c``,
    ``a.b.c`` if that is a module, else ``a.b``."""
    tree = ast.parse(FILES[module].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from jaxcoop import x`` imports module x; ``from jaxcoop.y import z`` module y.
            base = node.module
            names = [f"{base}.{a.name}" for a in node.names]
            names = [n if n.removeprefix("jaxcoop.") in FILES else base for n in names]
        else:
            continue
        for name in names:
            if name.startswith("jaxcoop.") and name.removeprefix("jaxcoop.") in FILES:
                found.add(name.removeprefix("jaxcoop."))
    return found - {module}


GRAPH = {m: imports_of(m) for m in MODULES}


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_reader_sees_plain_nested_and_package_imports():
    assert "algorithms.ppi" in GRAPH["trained"]  # from jaxcoop.algorithms import ppi
    assert "algorithms.ppi.model" in GRAPH["algorithms.ppi.planning"]
    assert "environment" in GRAPH["rollout"]  # from jaxcoop import environment, strategies
    assert "config" in GRAPH["train"]  # from jaxcoop.config import Config


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_itself_through_others(module):
    cycle = module in reachable(module)
    path = [m for m in GRAPH[module] if module in reachable(m) or m == module]
    assert not cycle, f"{module} -> {path} -> ... -> {module}"


@pytest.mark.parametrize("module", ["records", "checkpoints"])
def test_the_results_folder_does_not_need_the_training_program(module):
    training = [m for m in reachable(module) if m == "train" or m.startswith("algorithms")]
    assert training == []


def test_the_algorithm_families_never_import_each_other():
    families = ("algorithms.actor_critic", "algorithms.ppi")
    for family in families:
        inside = [m for m in MODULES if m == family or m.startswith(family + ".")]
        others = [f for f in families if f != family]
        reached = set().union(*(reachable(m) for m in inside))
        crossing = [m for m in reached for f in others if m == f or m.startswith(f + ".")]
        assert crossing == [], f"{family} reaches {crossing}"
        assert "train" not in reached, f"{family} imports the registry (jaxcoop.train)"


def test_no_library_module_imports_the_command_line():
    assert [m for m in MODULES if "cli" in GRAPH[m]] == []


def test_import_jaxcoop_does_not_import_orbax():
    code = "import sys, jaxcoop; print(sorted(m for m in sys.modules if m.startswith('orbax')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:500]
