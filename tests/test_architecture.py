"""The layers import downwards only, and modules import no cycle (docs/architecture.md).

Read from the source with ``ast`` (imports inside functions count too): ``bandits`` imports
none of ``variants``, ``service``, ``simulation``; ``variants`` none of ``service``,
``simulation``; the product (``bandits``, ``variants``, ``service``) never ``simulation``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"bandits": 0, "variants": 1, "service": 2, "simulation": 3}
# The one door from the product to the simulator: `banditloop simulate`, imported lazily
# inside the command, so the service never loads it otherwise.
ALLOWED_UPWARD = {"service.core.cli": "simulation"}
KNOWN_CYCLES: list[set[str]] = []
# Where a transaction may be opened (`unit_of_work(...)`, `runtime.unit_of_work()`, a bare
# `Session(...)`): the unit of work itself and the container; the request dependency and the
# request entry points that commit before a second step (ingestion, replay, the console's
# sign-in, API-key checks, keyed decisions); a worker's tick (refresher, loop scheduler and
# runner, decision log, state metrics); the CLI and the demo it seeds. Domain functions take
# the session.
OPENS_TRANSACTIONS = {
    "service.core.sessions",
    "service.core.runtime",
    "service.core.deps",
    "service.measuring.service",
    "service.measuring.replay",
    "service.console.auth",
    "service.core.auth",
    "service.deciding.decider",
    "service.policy.refresher",
    "service.loop.scheduler",
    "service.loop.runner",
    "service.deciding.log",
    "service.deciding.writer",
    "service.admin.state_metrics",
    "service.core.cli",
    "service.core.demo",
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    def layer(module: str) -> int:
        return LAYERS[module.split(".")[0]]

    return sorted(
        (m, t)
        for m, ts in graph.items()
        for t in ts
        if layer(t) > layer(m) and ALLOWED_UPWARD.get(m) != t.split(".")[0]
    )


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_layer_imports_a_layer_above_it():
    assert upward_imports(import_graph()) == []


def test_no_new_import_cycle():
    assert [c for c in cycles(import_graph()) if c not in KNOWN_CYCLES] == []


def opens_transaction(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in {"unit_of_work", "Session", "session_scope"}:
                return True
    return False


def test_only_the_entry_points_open_a_transaction():
    opening = {
        name
        for name, path in _modules().items()
        if name.startswith("service.") and opens_transaction(ast.parse(path.read_text()))
    }
    assert opening - OPENS_TRANSACTIONS == set()


# The modules of core that assemble the domains (the app, the container, the CLI and its
# demo, the OpenAPI document, the gunicorn entry): the rest of core is the platform every
# domain uses, and imports none of them.
CORE_ASSEMBLY = {
    "service.core.app",
    "service.core.runtime",
    "service.core.cli",
    "service.core.demo",
    "service.core.openapi",
    "service.core.gunicorn_conf",
}
SHARED = {"core", "models"}


def domain(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "service" and len(parts) > 2 else None


def cross_domain_repositories(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Endpoints that import another domain's repository instead of calling its rules."""
    return sorted(
        (m, t)
        for m, ts in graph.items()
        if m.endswith("endpoints") and domain(m)
        for t in ts
        if t.rsplit(".", 1)[-1].endswith("repository") and domain(t) not in (domain(m), *SHARED)
    )


def platform_imports_of_domains(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        (m, t)
        for m, ts in graph.items()
        if domain(m) == "core" and m not in CORE_ASSEMBLY
        for t in ts
        if domain(t) is not None and domain(t) not in SHARED
    )


def test_endpoints_never_import_another_domains_repository():
    assert cross_domain_repositories(import_graph()) == []


def test_the_platform_imports_no_domain():
    assert platform_imports_of_domains(import_graph()) == []


def test_the_checks_can_fail():
    assert opens_transaction(ast.parse("with runtime.unit_of_work() as session: pass"))
    assert opens_transaction(ast.parse("with Session(engine) as session: pass"))
    assert not opens_transaction(ast.parse("def f(session: Session) -> None: pass"))
    graph = {"bandits.a": {"service.b"}, "service.b": {"service.c"}, "service.c": {"service.b"}}
    assert upward_imports(graph) == [("bandits.a", "service.b")]
    assert cycles(graph) == [{"service.b", "service.c"}]
    graph = {
        "service.admin.endpoints": {"service.measuring.repository"},
        "service.core.settings": {"service.deciding.decider"},
        "service.core.app": {"service.deciding.endpoints"},
    }
    assert cross_domain_repositories(graph) == [
        ("service.admin.endpoints", "service.measuring.repository")
    ]
    assert platform_imports_of_domains(graph) == [
        ("service.core.settings", "service.deciding.decider")
    ]
