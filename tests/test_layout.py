"""The layout's rules, checked on the source: no module-level import cycle anywhere
(so every module imports alone), dependencies inside ``shared`` pointing one way, and
nothing in ``shared`` importing a service."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "orchestrator", "control_center", "provisioning")
SERVICES = ("orchestrator", "control_center", "provisioning")
# Allowed edges between shared's sub-packages (importer -> imported). The top-level
# modules (errors, settings, logs, metrics) may be imported by every one of them.
SHARED_ALLOWED = {
    "store": set(),
    "web": {"store", "security", "events"},  # web.app wires security and events into an app
    "security": {"store", "web", "events"},
    "events": {"store", "web", "security"},
    "webhooks": {"store", "web", "security", "events"},
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def module_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules imported at module level (not inside functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""  # the repository uses absolute imports only
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    out.add(full if full in known else base)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(node.orelse)
        out.discard(name)

    visit(tree.body)
    return {m for m in out if m in known}


def graph() -> nx.DiGraph:
    found = modules()
    g: nx.DiGraph = nx.DiGraph()
    for name, path in found.items():
        g.add_node(name)
        for imported in module_level_imports(path, name, set(found)):
            g.add_edge(name, imported)
    return g


def test_no_module_level_import_cycle() -> None:
    cycles = list(nx.simple_cycles(graph()))
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_shared_imports_no_service_and_its_packages_point_one_way() -> None:
    g = graph()
    wrong = []
    for importer, imported in g.edges:
        if not importer.startswith("shared"):
            continue
        if imported.split(".")[0] in SERVICES:
            wrong.append((importer, imported))
            continue
        a, b = importer.split("."), imported.split(".")
        if len(a) > 2 and len(b) > 2 and a[1] != b[1] and b[1] not in SHARED_ALLOWED.get(a[1], set()):
            wrong.append((importer, imported))
    assert not wrong, f"imports against the layout: {wrong}"
