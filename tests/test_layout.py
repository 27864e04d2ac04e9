"""The package layout has no import circles.

Every `import` in the API server counts (module level, inside functions and under
TYPE_CHECKING alike): a circle of modules, or two sub-packages that import each other,
fails with the circle named. Elsewhere (the store) only imports that run count: a type
hint may name the object that holds it (a watcher its store) without a protocol. The API server's sub-packages keep their
layers (docs/apiserver.md): transport and machinery at the bottom, then registry, the
watch cache, the endpoints, and the server on top; flow control stands alone.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "kubeplane"
API = "kubeplane.apiserver"
# sub-package -> the sub-packages it may import
LAYERS: dict[str, set[str]] = {
    "transport": set(),
    "machinery": set(),
    "flowcontrol": set(),
    "registry": {"machinery"},
    "cache": {"machinery", "registry"},
    "endpoints": {"machinery", "transport", "registry", "cache"},
    "server": {"machinery", "transport", "registry", "cache", "endpoints", "flowcontrol"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        tree = ast.parse(path.read_text())
        skip = set() if mod.startswith(API) else _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod and not mod.startswith(t + "."):   # a package's own __init__ is no edge
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _subpackage(mod: str) -> str | None:
    if not mod.startswith(API + "."):
        return None
    return mod[len(API) + 1:].split(".")[0]


def test_no_module_circles():
    assert _cycles(_graph()) == []


def test_apiserver_subpackages_keep_their_layers():
    graph = _graph()
    assert {_subpackage(m) for m in graph if _subpackage(m)} <= set(LAYERS), \
        "a new sub-package of the API server needs a place in LAYERS and docs/apiserver.md"
    wrong = []
    for mod, deps in graph.items():
        src = _subpackage(mod)
        for dep in deps:
            dst = _subpackage(dep)
            if src and dst and src != dst and dst not in LAYERS[src]:
                wrong.append(f"{mod} -> {dep}")
    assert wrong == []


def test_store_does_not_import_the_apiserver():
    graph = _graph()
    wrong = [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("kubeplane.store")
             for d in deps if d.startswith(API)]
    assert wrong == []


def test_scheduler_talks_to_the_api_only_through_the_client():
    """kubeplane.scheduler runs against any API server: it may import kubeplane.client
    (and the runtime helpers), never the API server or the store."""
    graph = _graph()
    allowed = ("kubeplane.scheduler", "kubeplane.client", "kubeplane.runtime")
    wrong = [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("kubeplane.scheduler")
             for d in deps if d.startswith("kubeplane.") and not d.startswith(allowed)]
    assert wrong == []
    assert any(m.startswith("kubeplane.scheduler") for m in graph)


def test_controllers_talk_to_the_api_only_through_the_client():
    """kubeplane.controllers runs against any API server: it may import kubeplane.client
    (and the runtime helpers), never the API server, the store, the scheduler or sim."""
    graph = _graph()
    allowed = ("kubeplane.controllers", "kubeplane.client", "kubeplane.runtime")
    wrong = [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("kubeplane.controllers")
             for d in deps if d.startswith("kubeplane.") and not d.startswith(allowed)]
    assert wrong == []
    assert any(m.startswith("kubeplane.controllers.") for m in graph)


def test_the_checker_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_client_imports_nothing_else_of_kubeplane():
    """kubeplane.client is a client of any Kubernetes API server: it may not import the
    API server, the store or any other kubeplane package (they may import it)."""
    graph = _graph()
    wrong = [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("kubeplane.client")
             for d in deps if d.startswith("kubeplane.") and not d.startswith("kubeplane.client")]
    assert wrong == []
    assert any(m.startswith("kubeplane.client.") for m in graph), "the checker must see the client package"


def _between(graph: dict[str, set[str]], a: str, b: str) -> list[str]:
    """Imports from package `a` into package `b` or back."""
    return [f"{m} -> {d}" for m, deps in graph.items() for d in deps
            if (m.startswith(a) and d.startswith(b)) or (m.startswith(b) and d.startswith(a))]


def test_sim_and_apiserver_talk_over_http_only():
    """kubeplane.sim (hollow nodes, their kubelet API) and the API server never import each
    other: the API server reaches a simulated kubelet the way it reaches a real one."""
    assert _between(_graph(), "kubeplane.sim", API) == []


def test_the_sim_rule_sees_an_import():
    assert _between({"kubeplane.sim.kubelet.server": {"kubeplane.apiserver.transport.http"}},
                    "kubeplane.sim", API) == ["kubeplane.sim.kubelet.server -> kubeplane.apiserver.transport.http"]
    assert _between({"kubeplane.apiserver.app": {"kubeplane.sim.kubelet"}}, "kubeplane.sim", API) != []


def _sim_imports_outside(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} -> {d}" for m, deps in graph.items() if m.startswith("kubeplane.sim")
            for d in deps if d.startswith("kubeplane.")
            and not d.startswith(("kubeplane.sim", "kubeplane.client", "kubeplane.runtime"))]


def test_sim_uses_only_the_client():
    """Hollow nodes run against any API server: kubeplane.sim imports only kubeplane.client
    and the runtime helpers (and itself), never the store, the scheduler or the API server."""
    graph = _graph()
    assert _sim_imports_outside(graph) == []
    assert any(m.startswith("kubeplane.sim.nodes.") for m in graph), "the checker must see the simulator"
    assert _sim_imports_outside({"kubeplane.sim.nodes.pods": {"kubeplane.scheduler.cache"}}) == [
        "kubeplane.sim.nodes.pods -> kubeplane.scheduler.cache"]


def test_test_modules_have_unique_basenames():
    """pytest imports test modules by basename (the test dirs have no __init__.py): two
    files of one name in different directories stop the whole run at collection."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for p in tests.rglob("test_*.py"):
        seen.setdefault(p.name, []).append(str(p.relative_to(tests)))
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}
