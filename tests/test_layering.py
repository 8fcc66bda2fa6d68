"""The layering, checked on the source: handlers (``orchestrator/api/*``,
``control_center/*_api.py``) call services and views, never a repository or the
store; services never see ``web.Request``; SurrealQL lives in repositories only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("orchestrator", "control_center")
# Statements as the code writes them: a keyword at the start of a string literal.
SURREALQL = re.compile(
    r"^\s*(SELECT|UPDATE|UPSERT|CREATE|DELETE|INSERT|RELATE|RETURN|DEFINE|LET)\s"
)  # statements are written in capitals
HTTP_VERBS = {"DELETE"}  # a route's method, not a statement


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def is_handler(path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return rel.startswith("orchestrator/api/") or rel.endswith("_api.py")


def is_repository(path: Path) -> bool:
    return "repositor" in path.name


def is_wiring(path: Path) -> bool:
    """Where apps are built: they see requests (health, OpenAPI) but hold no rule."""
    return path.name in ("app.py", "keys.py")


def statements(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if SURREALQL.match(text) and text.strip().upper() not in HTTP_VERBS:
                found.append(text.strip().splitlines()[0][:60])
    return found


def test_surrealql_lives_in_repositories_only() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix(): statements(path)
        for package in SERVICES
        for path in sources(package)
        if not is_repository(path)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_handlers_reach_no_repository_store_or_engine_internals() -> None:
    wrong = []
    for package in SERVICES:
        for path in filter(is_handler, sources(package)):
            text = path.read_text()
            for needle in (".repo.", ".repo\n", "[STORE]", "[ENGINE]", "repository import", ".store."):
                if needle in text:
                    wrong.append(f"{path.relative_to(ROOT)}: {needle.strip()}")
    assert wrong == []


def test_services_never_see_the_request() -> None:
    wrong = [
        path.relative_to(ROOT).as_posix()
        for package in SERVICES
        for path in sources(package)
        if not is_handler(path) and not is_wiring(path) and "web.Request" in path.read_text()
    ]
    assert wrong == []


def test_views_live_in_one_module_per_service() -> None:
    """Only the views modules define ``*_view`` functions or ``view`` methods."""
    wrong = []
    for package in SERVICES:
        for path in sources(package):
            if path.name == "views.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    node.name == "view" or node.name.endswith("_view")
                ):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert wrong == []
