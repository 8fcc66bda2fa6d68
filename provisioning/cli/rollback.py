"""``checkpoint create|list|show|stats``, ``rollback`` and ``restore``: each change of
recorded state shows what it will do, in order, and asks before doing it (``--yes`` skips)."""

from __future__ import annotations

from typing import Any

import typer

from provisioning.cli.commands import item_command
from provisioning.cli.common import EXIT_FAILED, Session, confirm, run, say
from provisioning.cli.output import OUTPUT_OPTION, Output, show_item, show_list
from provisioning.client import ApiError

checkpoint_app = typer.Typer(
    help="Checkpoints: named positions to roll back or restore to.", no_args_is_help=True
)
YES = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")


@checkpoint_app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="a name for it, e.g. before_v2"),
    description: str = typer.Option(None, "--description", "-d"),
    batch: str = typer.Option(None, "--batch", help="the batch it concerns (optional)"),
) -> None:
    """Record a checkpoint of the current state.

    \b
    Example:
      provisioning checkpoint create before_v2 --description "before deploying v2.0.0"
    """
    body = {"name": name, "description": description, "workflow_id": batch}
    cid = run(
        ctx, lambda s: s.orch.call("POST", "/rollback/checkpoints", {k: v for k, v in body.items() if v})
    )
    say(str(cid))


@checkpoint_app.command("list")
def list_checkpoints(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1),
    every: bool = typer.Option(False, "--all", help="every checkpoint, following the pages"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Checkpoints, newest first.

    \b
    Example:
      provisioning checkpoint list -o json
    """
    page = run(ctx, lambda s: s.orch.collect("/rollback/checkpoints", limit=limit, every=every))
    show_list(
        page.items,
        [
            ("ID", "id"),
            ("NAME", "name"),
            ("CREATED", "created_at"),
            ("BATCH", "workflow_id"),
            ("AUTO", "automatic"),
            ("DESCRIPTION", "description"),
        ],
        output,
        total=page.total,
        empty="no checkpoints",
    )


item_command(
    checkpoint_app,
    "show",
    """One checkpoint.

    \b
    Example:
      provisioning checkpoint show 1c9e…
    """,
    "orch",
    "GET",
    "/rollback/checkpoints/{id}",
)


@checkpoint_app.command("stats")
def stats(ctx: typer.Context, output: Output = OUTPUT_OPTION) -> None:
    """Rollback statistics: checkpoints, rollbacks, success rate, mean duration.

    \b
    Example:
      provisioning checkpoint stats
    """
    show_item(run(ctx, lambda s: s.orch.call("GET", "/rollback/statistics")), output)


# -- what a rollback would undo --------------------------------------------------------------


def _newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The server's order: dependents before dependencies, i.e. latest completion first."""
    return sorted(rows, key=lambda r: str(r.get("completed_at") or ""), reverse=True)


async def _by_checkpoint(s: Session, checkpoint_id: str, batch: str | None) -> list[dict[str, Any]]:
    cp = await s.orch.call("GET", f"/rollback/checkpoints/{checkpoint_id}")
    tasks = (await s.orch.collect("/tasks", {"status": "Completed", "workflow_id": batch}, every=True)).items
    since = str(cp.get("created_at") or "")
    rows = [
        {
            "operation": t["name"],
            "batch": t["workflow_id"],
            "task_id": t["id"],
            "completed_at": t.get("completed_at"),
        }
        for t in tasks
        if str(t.get("completed_at") or "") > since
    ]
    return _newest_first(rows)


async def _by_operations(s: Session, ids: list[str], batch: str | None) -> list[dict[str, Any]]:
    """The operations and every completed dependent of theirs, as the server chooses them."""
    wanted: dict[str, set[str]] = {}
    if batch:
        wanted[batch] = set(ids)
    else:  # task ids
        for task_id in ids:
            task = await s.orch.call("GET", f"/tasks/{task_id}")
            wanted.setdefault(str(task["workflow_id"]), set()).add(str(task["name"]))
    rows: list[dict[str, Any]] = []
    for wid, names in wanted.items():
        view = await s.orch.call("GET", f"/batch/operations/{wid}")
        ops = view.get("operations") or []
        missing = names - {o["id"] for o in ops}
        if missing:
            raise ApiError(404, f"unknown operation ids: {', '.join(sorted(missing))}")
        dependents: dict[str, list[str]] = {o["id"]: [] for o in ops}
        for o in ops:
            for dep in o.get("dependencies") or []:
                dependents.setdefault(dep, []).append(o["id"])
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(dependents.get(name, []))
        rows.extend(
            {
                "operation": o["id"],
                "batch": wid,
                "task_id": o.get("task_id"),
                "completed_at": o.get("completed_at"),
            }
            for o in ops
            if o["id"] in seen and o.get("status") == "Completed"
        )
    return _newest_first(rows)


def rollback(
    ctx: typer.Context,
    checkpoint: str = typer.Option(
        None, "--checkpoint", help="undo everything completed after this checkpoint"
    ),
    operations: str = typer.Option(
        None, "--operations", help="undo these operations (comma-separated) and their completed dependents"
    ),
    batch: str = typer.Option(None, "--batch", help="the batch the --operations names belong to"),
    yes: bool = YES,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Undo completed operations, dependents first; shows the order and asks first.

    Without --batch, --operations takes task ids.

    \b
    Examples:
      provisioning rollback --checkpoint 1c9e…
      provisioning rollback --operations app_servers,database --batch 5f0c… --yes
    """
    if bool(checkpoint) == bool(operations):
        raise typer.BadParameter("give exactly one of --checkpoint or --operations")
    ids = [i.strip() for i in (operations or "").split(",") if i.strip()]

    async def preview(s: Session) -> list[dict[str, Any]]:
        if checkpoint:
            return await _by_checkpoint(s, checkpoint, batch)
        return await _by_operations(s, ids, batch)

    rows = run(ctx, preview)
    if not rows:
        say("nothing to roll back: no completed operation matches")
        return
    say(f"These {len(rows)} operations will be rolled back, in this order:")
    show_list(
        [{"order": n, **r} for n, r in enumerate(rows, start=1)],
        [("#", "order"), ("OPERATION", "operation"), ("BATCH", "batch"), ("COMPLETED", "completed_at")],
        Output.table,
    )
    confirm("Roll them back?", yes)
    body: dict[str, Any] = (
        {"checkpoint_id": checkpoint, "workflow_id": batch}
        if checkpoint
        else {"operation_ids": ids, "workflow_id": batch}
    )
    result = run(
        ctx, lambda s: s.orch.call("POST", "/rollback/execute", {k: v for k, v in body.items() if v})
    )
    show_item(result, output)
    if not result.get("success", True):
        raise typer.Exit(EXIT_FAILED)


def restore(
    ctx: typer.Context,
    checkpoint_id: str = typer.Argument(..., metavar="ID"),
    yes: bool = YES,
) -> None:
    """Reset recorded state to a checkpoint (asks first).

    \b
    Example:
      provisioning restore 1c9e… --yes
    """
    cp = run(ctx, lambda s: s.orch.call("GET", f"/rollback/checkpoints/{checkpoint_id}"))
    say(
        f"Restore resets the recorded status of tasks and batches to checkpoint {cp['id']} "
        f"({cp.get('name')}, {cp.get('created_at')}); it runs no undo."
    )
    confirm("Restore it?", yes)
    say(str(run(ctx, lambda s: s.orch.call("POST", f"/rollback/restore/{checkpoint_id}"))))
