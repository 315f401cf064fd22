"""The rooms stay rooms: no import circles, dependencies point one way, and the maps name every room.

Reads the source with `ast` (every import, including the ones inside functions), so a circle that only
closes at call time is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "activities", "workflows")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "templates" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    deps.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "orchestrator" or len(parts) == 1:
        return parts[0]
    return parts[1] if (ROOT / "orchestrator" / parts[1]).is_dir() else "top"


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


def test_dependencies_point_one_way() -> None:
    """control/ and runs/ never reach up (api, cli, dashboard) nor into each other; the lower rooms
    (store, bundles, temporal, runner, sdk, config) never import control/ or runs/."""
    upper = {"api", "cli", "dashboard", "devstack", "activities", "workflows"}
    lower = {"store", "bundles", "temporal", "runner", "sdk", "config"}
    wrong = []
    for module, deps in _graph().items():
        room = _room(module)
        for dep in deps:
            target = _room(dep)
            if room in {"control", "runs"} and (target in upper or target in {"control", "runs"} - {room}):
                wrong.append(f"{module} -> {dep}")
            if room in lower and target in {"control", "runs", "api", "cli", "dashboard", "top"} and \
                    dep not in {"orchestrator.errors", "orchestrator.crypto", "orchestrator.logging"}:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_workflows_import_only_what_their_sandbox_allows() -> None:
    for module, deps in _graph().items():
        if module.startswith("workflows."):
            assert {_room(d) for d in deps} <= {"temporal"}, (module, deps)


def test_the_sandboxed_child_imports_only_the_sdk_and_itself() -> None:
    graph = _graph()
    seen, todo = set(), ["orchestrator.runner.child"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(graph[module])
    allowed = {"orchestrator", "orchestrator.runner", "orchestrator.runner.child", "orchestrator.runner.seccomp_child"}
    assert {m for m in seen if not m.startswith("orchestrator.sdk")} <= allowed


def test_readme_and_architecture_name_every_room() -> None:
    readme = (ROOT / "README.md").read_text()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    rooms = sorted(p.name for p in (ROOT / "orchestrator").iterdir()
                   if p.is_dir() and (p / "__init__.py").exists())
    for room in rooms:
        assert f"orchestrator/{room}/" in readme, f"README layout table lacks orchestrator/{room}/"
        assert f"orchestrator/{room}/" in architecture or f"`{room}/`" in architecture, room


def test_no_code_names_the_old_jobs_table() -> None:
    """`sync_jobs` survives only as a view for the previous release's pods; our code uses `jobs`."""
    offenders = [str(path.relative_to(ROOT)) for path in _modules().values() if "sync_jobs" in path.read_text()]
    assert offenders == []
