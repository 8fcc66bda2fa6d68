"""Counters against a full count() scan: what tests of counters compare (no fixtures here)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared.store.counters import counts_of
from shared.store.pages import page_rows
from shared.store.store import Store


async def _by(store: Store, table: str, field: str, where: str = "", params: Any = None) -> dict[str, int]:
    rows = await store.query(
        f"SELECT {field}, count() AS n FROM {table} {where} GROUP BY {field}", params or {}
    )
    return {str(r[field]): int(r["n"]) for r in rows if r["n"]}


async def _counter(store: Store, key: str) -> dict[str, int]:
    rows = await store.query("SELECT * FROM type::thing('counter', $k)", {"k": key})
    return counts_of(rows[0] if rows else None)


async def _total(store: Store, table: str, where: str = "", params: Any = None) -> dict[str, int]:
    rows = await store.query(f"SELECT count() AS n FROM {table} {where} GROUP ALL", params or {})
    n = int(rows[0]["n"]) if rows else 0
    return {"n": n} if n else {}


async def _tasks_by(store: Store) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Tasks by status, in all and by workflow: every row of every page, decoded."""
    everywhere: Counter[str] = Counter()
    by_workflow: dict[str, Counter[str]] = {}
    for record in await store.query("SELECT rows FROM task_page"):
        for row in page_rows(record):
            everywhere[str(row["status"])] += 1
            by_workflow.setdefault(str(row["workflow_id"]), Counter())[str(row["status"])] += 1
    return dict(everywhere), {w: dict(c) for w, c in by_workflow.items()}


async def counter_mismatches(store: Store) -> list[str]:
    """Every counter that disagrees with a scan of the rows it counts (empty: all exact).
    Reads apply pending lazy rows first, so the rows are as acknowledged."""
    tasks, tasks_by_workflow = await _tasks_by(store)
    expected: dict[str, dict[str, int]] = {
        "task": tasks,
        "workflow": await _by(store, "workflow", "status"),
        "workflow_kind": await _by(store, "workflow", "kind"),
        "snapshot": await _total(store, "snapshot"),
        "checkpoint": await _total(store, "checkpoint"),
        "user": await _total(store, "user"),
    }
    for wid in await store.query("SELECT VALUE record::id(id) FROM workflow"):
        expected[f"workflow/{wid}"] = tasks_by_workflow.get(str(wid), {})
    for row in await store.query("SELECT webhook_id FROM webhook_delivery GROUP BY webhook_id"):
        hook = row["webhook_id"]
        expected[f"webhook_delivery/{hook}"] = await _total(
            store, "webhook_delivery", "WHERE webhook_id = $w", {"w": hook}
        )
    finished = await store.query("SELECT VALUE duration_s FROM workflow WHERE type::is::number(duration_s)")
    expected["workflow_duration"] = {
        k: v for k, v in {"ms": sum(round(d * 1000) for d in finished), "n": len(finished)}.items() if v
    }
    # Counter rows of workflows that are gone must hold nothing.
    for key in await store.query("SELECT VALUE record::id(id) FROM counter"):
        if str(key).startswith(("workflow/", "webhook_delivery/")):
            expected.setdefault(str(key), {})
    problems = []
    for key, want in expected.items():
        got = await _counter(store, key)
        if got != want:
            problems.append(f"{key}: counter {got} != scan {want}")
    return problems
