"""The import rules of docs/architecture.md, read from the source: each package imports
only the packages below it, `rediskit` imports nothing of the project, and no modules
import each other in a circle when they are loaded."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each package may import besides itself. The order is the data's way down:
# live (HTTP, CLI, wiring) → orders → inventory → realtime → outage/telemetry → rediskit.
ALLOWED: dict[str, set[str]] = {
    "domain": set(),  # the error type every layer raises
    "rediskit": set(),
    "telemetry": set(),
    "outage": set(),
    "realtime": {"domain", "rediskit", "outage", "telemetry"},
    # inventory/streams.py ends a stream with realtime's broadcast.lua and keys.
    "inventory": {"domain", "rediskit", "outage", "telemetry", "realtime"},
    "orders": {"domain", "rediskit", "outage", "telemetry", "realtime", "inventory"},
    "live": {"domain", "rediskit", "outage", "telemetry", "realtime", "inventory", "orders"},
    # The load test talks HTTP and websocket only.
    "loadtest": set(),
}


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imported(node: ast.AST, known: dict[str, Path]) -> set[str]:
    """The project modules an import statement names (`from a import b` names `a.b`
    when that is a module, else `a`)."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = {node.module}
        names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name in known}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, known: dict[str, Path], load_time_only: bool) -> set[str]:
    """Every project module `path` imports; with `load_time_only`, only the imports
    that run when it is loaded (not in functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    if not load_time_only:
        return {m for node in ast.walk(tree) for m in _imported(node, known)}
    found: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        found |= _imported(node, known)
        if isinstance(node, ast.If | ast.Try | ast.With) and not _type_checking(node):
            todo += [n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)]
            if isinstance(node, ast.Try):
                todo += [n for h in node.handlers for n in h.body]
    return found


def test_packages_import_only_the_layers_below_them() -> None:
    known = modules()
    upward: list[str] = []
    for name, path in sorted(known.items()):
        package = name.split(".")[0]
        for target in sorted(imports(path, known, load_time_only=False)):
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                upward.append(f"{name} imports {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_rediskit_imports_nothing_of_the_project() -> None:
    known = modules()
    for name, path in known.items():
        if name.split(".")[0] == "rediskit":
            outside = {t for t in imports(path, known, False) if not t.startswith("rediskit")}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_the_allowed_package_graph_has_no_circle() -> None:
    # Otherwise the rules above would allow a cycle between packages.
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"circle: {' -> '.join((*path, package))}"
        if package in done:
            return
        for lower in ALLOWED[package]:
            visit(lower, (*path, package))
        done.add(package)

    for package in ALLOWED:
        visit(package, ())


def test_no_import_cycle_between_modules_at_load_time() -> None:
    known = modules()
    graph = {name: imports(path, known, True) - {name} for name, path in known.items()}
    cycles: list[list[str]] = []
    # Tarjan's strongly connected components: any with more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, f"modules importing each other when loaded: {cycles}"
