"""The package's layers, read from its own import graph.

``docs/architecture.md`` draws the layers; these tests hold the code to the
drawing: imports point down only, no import cycle exists (a function-local
import that closes one is a cycle all the same), and the recipes and
benchmarks import nothing private.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "agent_resume"

# Lowest first. A module may import its own layer and the layers below it.
LAYERS = ("primitives", "stores", "session", "run", "surfaces")


def layer_of(module: str) -> str:
    """The layer a module of the package belongs to."""
    parts = module.split(".")
    if module in {"agent_resume", "agent_resume.__main__", "agent_resume.testing"}:
        return "surfaces"
    sub = parts[1]
    return {"_cli": "surfaces", "_run": "run", "_session": "session", "stores": "stores"}.get(
        sub, "primitives"
    )


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """Yield (imported module, line, local) for every import that runs, skipping TYPE_CHECKING."""

    def visit(node: ast.AST, local: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from visit(sub, local)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("agent_resume"):
                        yield alias.name, child.lineno, local
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and (child.module or "").startswith("agent_resume")
            ):
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    yield (full if full in known else str(child.module)), child.lineno, local
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            yield from visit(child, inner)

    yield from visit(tree, False)


def import_graph() -> dict[str, list[tuple[str, int, bool]]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {
        name: list(runtime_imports(ast.parse(path.read_text(encoding="utf-8")), known))
        for name, path in files.items()
    }


def test_the_graph_sees_every_layer() -> None:
    graph = import_graph()
    assert {layer_of(m) for m in graph} == set(LAYERS)
    assert len(graph) > 40


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, imports in import_graph().items():
        own = LAYERS.index(layer_of(module))
        for target, line, _local in imports:
            if LAYERS.index(layer_of(target)) > own:
                wrong.append(
                    f"{module}:{line} ({layer_of(module)}) imports {target} ({layer_of(target)})"
                )
    assert wrong == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets (a package and its own modules excepted)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a cycle.
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_no_import_cycle_even_through_function_local_imports() -> None:
    graph = {m: {t for t, _, _ in imports if t != m} for m, imports in import_graph().items()}
    assert find_cycles(graph) == []


def test_the_checks_themselves_catch_what_they_look_for() -> None:
    # A function-local import is read; a TYPE_CHECKING one is not; a cycle is found.
    known = {"agent_resume._a", "agent_resume._b"}
    tree_a = ast.parse("def f():\n    from agent_resume._b import x\n")
    assert list(runtime_imports(tree_a, known)) == [("agent_resume._b", 2, True)]
    tree_tc = ast.parse("if TYPE_CHECKING:\n    from agent_resume._run import x\n")
    assert list(runtime_imports(tree_tc, known)) == []
    graph = {"agent_resume._a": {"agent_resume._b"}, "agent_resume._b": {"agent_resume._a"}}
    assert find_cycles(graph) == [["agent_resume._a", "agent_resume._b", "agent_resume._a"]]
    assert layer_of("agent_resume._run._runner") == "run"
    assert layer_of("agent_resume._accounting._usage") == "primitives"


PUBLIC_MODULES = {"agent_resume", "agent_resume.stores", "agent_resume.testing"}


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "recipes").glob("*.py")) + sorted((ROOT / "bench").glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_recipes_and_benchmarks_import_only_the_public_api(path: Path) -> None:
    private = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        private += [
            f"line {node.lineno}: {n}"
            for n in names
            if n.startswith("agent_resume") and n not in PUBLIC_MODULES
        ]
    assert private == []


# Attributes with a leading underscore that are not another class's secrets.
_NOT_PRIVATE = {"_replace", "_asdict", "_fields", "_exit", "_getframe", "_phase"}


def _private_names_defined(tree: ast.AST) -> set[str]:
    """The private names a module defines: functions, classes, attributes and slots it sets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_")}


def foreign_private_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """``obj._name`` where ``_name`` is private to some other module's class."""
    own = _private_names_defined(tree)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            and node.attr not in own
            and node.attr not in _NOT_PRIVATE
        ):
            found.append((node.lineno, node.attr))
    return found


def test_no_module_reads_another_modules_private_attributes() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, attr in foreign_private_reads(ast.parse(path.read_text(encoding="utf-8"))):
            wrong.append(f"{module_name(path)}:{line} reads .{attr}")
    assert wrong == []


def test_the_private_attribute_check_sees_a_foreign_read() -> None:
    tree = ast.parse("def f(session):\n    return session._done\n")
    assert foreign_private_reads(tree) == [(2, "_done")]
    own = ast.parse(
        "class A:\n    def __init__(self):\n        self._x = 1\n\ndef g(a):\n    return a._x\n"
    )
    assert foreign_private_reads(own) == []
