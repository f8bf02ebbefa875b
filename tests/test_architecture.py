"""The module graph: no cycles among i2a_core modules, counting imports inside functions and dotted stage paths."""

from __future__ import annotations

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "i2a_core"
DOTTED_PATH = re.compile(r"^(i2a_core(?:\.\w+)+):\w+$")  # runner.load() targets


def _modules() -> dict[str, str]:
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[module.removesuffix(".__init__")] = path
    return found


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
    """module -> the i2a_core modules it imports anywhere (top level, functions, dotted paths); and the
    (module, target) pairs of imports of i2a_core modules made inside functions."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    in_functions = []
    for module, path in modules.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        nested = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for node in ast.walk(function)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from package import module` depends on that module; `from module import name` on the module.
                submodules = [f"{node.module}.{alias.name}" for alias in node.names
                              if f"{node.module}.{alias.name}" in modules]
                targets = submodules if len(submodules) == len(node.names) else [node.module] + submodules
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED_PATH.match(node.value):
                targets = [DOTTED_PATH.match(node.value).group(1)]
            targets = [t for t in targets if t in modules and t != module]
            edges[module].update(targets)
            if targets and isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) in nested:
                in_functions.append((module, targets[0]))
    return edges, in_functions


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_counting_function_level_imports_and_stage_paths():
    edges, _ = import_graph()
    assert cycles(edges) == []


def test_the_check_sees_a_cycle_hidden_in_a_function():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    source = "def f():\n    from i2a_core.specs import ClipSpec\n"
    tree = ast.parse(source)
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree.body[0]))


def test_no_i2a_module_is_imported_inside_a_function():
    """Function-level imports are for heavy third-party libraries (torch, ray, open_clip) only: an i2a module
    imported inside a function hides a dependency, and with it a cycle, from anyone reading the module's head."""
    _, in_functions = import_graph()
    assert in_functions == []
