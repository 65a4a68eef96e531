"""Import hygiene: the library's import graph (read from the source, imports inside functions
included) has no cycle, ``import jaxcoop`` stays light, and no library module needs the
command line."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxcoop"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imports_of(module: str) -> set[str]:
    """The ``jaxcoop`` modules that ``module`` imports anywhere in its source."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from jaxcoop import x`` imports module x; ``from jaxcoop.y import z`` module y.
            base = node.module
            names = [f"{base}.{a.name}" for a in node.names] if base == "jaxcoop" else [base]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "jaxcoop" and len(parts) > 1 and parts[1] in MODULES:
                found.add(parts[1])
    return found - {module}


GRAPH = {m: imports_of(m) for m in MODULES}


def reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_reader_sees_plain_and_nested_imports():
    assert "environment" in GRAPH["rollout"]  # from jaxcoop import environment, strategies
    assert "config" in GRAPH["train"]  # from jaxcoop.config import Config


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_itself_through_others(module):
    cycle = module in reachable(module)
    path = [m for m in GRAPH[module] if module in reachable(m) or m == module]
    assert not cycle, f"{module} -> {path} -> ... -> {module}"


@pytest.mark.parametrize("module", ["records", "checkpoints"])
def test_the_results_folder_does_not_need_the_training_program(module):
    assert "train" not in reachable(module) and "ppi" not in reachable(module)


def test_no_library_module_imports_the_command_line():
    assert [m for m in MODULES if "cli" in GRAPH[m]] == []


def test_import_jaxcoop_does_not_import_orbax():
    code = "import sys, jaxcoop; print(sorted(m for m in sys.modules if m.startswith('orbax')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:500]
