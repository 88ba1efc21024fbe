"""The shape of the code, checked: layered imports with no cycle and no upward arrow, no service
importing another, no private module imported from outside its package, and nats-py only
inside evolver/bus. Read from the source with `ast` (nothing is imported)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Lower layers never import higher ones. Within a layer imports are allowed but must not cycle.
LAYERS = [
    {"evolver.v1", "evolver.errors", "evolver.limits", "evolver.config", "evolver.telemetry", "evolver.prompts"},
    {"evolver.rpc", "evolver.bus", "evolver.envs", "evolver.algorithms", "evolver.models", "evolver.memory"},
    {"evolver.agent", "evolver.service"},
    {"services.explorer", "services.task_gen", "services.memory", "services.attributor", "services.trainer"},
    {"evolver.stack", "evolver.cli"},
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in ("evolver", "services") or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, file) for every absolute import in evolver/ and services/."""
    out = []
    for path in sorted([*ROOT.glob("evolver/**/*.py"), *ROOT.glob("services/**/*.py")]):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("evolver", "v1"):
            continue  # generated
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out += [(module, a.name, str(rel)) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.append((module, node.module, str(rel)))
                out += [(module, f"{node.module}.{a.name}", str(rel)) for a in node.names]
    return out


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m, _, _ in imports()}
    assert units - {None} <= set(LAYER_OF), sorted(units - set(LAYER_OF) - {None})


def test_no_upward_import_and_no_service_imports_another():
    problems = []
    for module, target, path in imports():
        src, dst = unit_of(module), unit_of(target)
        if not src or not dst or src == dst or dst not in LAYER_OF:
            continue
        if LAYER_OF[dst] > LAYER_OF[src]:
            problems.append(f"{path}: {src} (layer {LAYER_OF[src]}) imports {target} (layer {LAYER_OF[dst]})")
        if src.startswith("services.") and dst.startswith("services."):
            problems.append(f"{path}: service {src} imports service {dst}")
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_units():
    edges: dict[str, set[str]] = defaultdict(set)
    for module, target, _ in imports():
        src, dst = unit_of(module), unit_of(target)
        if src and dst and src != dst and dst in LAYER_OF:
            edges[src].add(dst)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2
    for node in list(edges):
        if node not in state:
            visit(node, [node])


def test_private_modules_stay_inside_their_package():
    problems = []
    for module, target, path in imports():
        parts = target.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                package = ".".join(parts[:i])
                if not module.startswith(package + ".") and module != package:
                    problems.append(f"{path}: {module} imports private {target}")
                break
    assert not problems, "\n".join(problems)


def test_nats_py_is_used_only_by_the_bus():
    problems = []
    for module, target, path in imports():
        if (target == "nats" or target.startswith("nats.")) and not module.startswith("evolver.bus"):
            problems.append(f"{path}: {module} imports {target}")
    for path in [*ROOT.glob("evolver/**/*.py"), *ROOT.glob("services/**/*.py")]:
        rel = path.relative_to(ROOT)
        if rel.parts[:2] in (("evolver", "bus"), ("evolver", "v1")):
            continue
        text = path.read_text()
        problems += [f"{rel}: reaches into the bus's connection ({attr})" for attr in ("bus.nc", "bus.js", "._nc", "._js")
                     if attr in text]
    assert not problems, "\n".join(problems)


def test_business_logic_does_not_catch_grpc_errors():
    """Only the transport edge knows gRPC: the agent runtime and the services' domain modules
    see domain errors (evolver.envs.client translates statuses once)."""
    domain = [*ROOT.glob("evolver/agent/*.py"), *ROOT.glob("services/*/*.py")]
    edge = {"servicer.py", "app.py", "__main__.py"}
    problems = [str(p.relative_to(ROOT)) for p in domain
                if p.name not in edge and ("AioRpcError" in p.read_text() or "StatusCode" in p.read_text())]
    assert not problems, problems
