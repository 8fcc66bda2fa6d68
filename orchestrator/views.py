"""Shapes of the API's responses (seed 004), built from store rows."""

from __future__ import annotations

from typing import Any

from orchestrator.states import FINAL_TASK, TaskStatus


def task_view(row: dict[str, Any]) -> dict[str, Any]:
    """``/tasks`` entry: the seed's fields first, then what else a task knows."""
    return {
        "id": row["id"],
        "name": row["name"],
        "command": row.get("command"),
        "args": row.get("args") or [],
        "dependencies": row.get("dependencies") or [],
        "status": row["status"],
        "created_at": row.get("created_at"),
        "started_at": row.get("started_at"),
        "completed_at": row.get("completed_at"),
        "output": row.get("output"),
        "error": row.get("error"),
        "workflow_id": row.get("workflow_id"),
        "type": row.get("type"),
        "provider": row.get("provider"),
        "attempt": row.get("attempt", 0),
        "max_attempts": row.get("max_attempts"),
        "progress": row.get("progress", 0.0),
        "message": row.get("message"),
        "results": row.get("results"),
    }


def operation_view(row: dict[str, Any]) -> dict[str, Any]:
    """A batch's ``operations[]`` entry."""
    return {
        "id": row["name"],
        "task_id": row["id"],
        "type": row.get("type"),
        "provider": row.get("provider"),
        "status": row["status"],
        "progress": float(row.get("progress") or 0.0),
        "attempt": row.get("attempt", 0),
        "dependencies": row.get("dependency_names") or [],
        "started_at": row.get("started_at"),
        "completed_at": row.get("completed_at"),
        "results": row.get("results"),
        "output": row.get("output"),
        "error": row.get("error"),
    }


def batch_view(wf: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "batch_id": wf["id"],
        "name": wf["name"],
        "version": wf.get("version"),
        "kind": wf.get("kind", "batch"),
        "status": wf["status"],
        "created_at": wf.get("created_at"),
        "started_at": wf.get("started_at"),
        "completed_at": wf.get("completed_at"),
        "parallel_limit": wf.get("parallel_limit"),
        "rollback_enabled": wf.get("rollback_enabled"),
        "progress": progress_of(tasks),
        "error": wf.get("error"),
        "rollback": wf.get("rollback"),
        "checkpoint_id": wf.get("checkpoint_id"),
        "operations": [operation_view(t) for t in tasks],
    }


def progress_of(tasks: list[dict[str, Any]]) -> float:
    if not tasks:
        return 100.0
    done = {str(s) for s in FINAL_TASK}
    total = sum(100.0 if t["status"] in done else float(t.get("progress") or 0.0) for t in tasks)
    return round(total / len(tasks), 2)


def workflow_progress(wf: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """``/state/workflows/{id}/progress``: percent, current step and an ETA in seconds."""
    done = {str(s) for s in FINAL_TASK}
    finished = [t for t in tasks if t["status"] in done]
    running = [t for t in tasks if t["status"] in (TaskStatus.RUNNING, TaskStatus.ROLLING_BACK)]
    durations = [
        (t["completed_at"] - t["started_at"]).total_seconds()
        for t in finished
        if t.get("completed_at") is not None
        and t.get("started_at") is not None
        and hasattr(t["completed_at"], "__sub__")
    ]
    remaining = len(tasks) - len(finished)
    eta: float | None
    if remaining == 0:
        eta = 0
    elif durations:
        lanes = max(1, min(int(wf.get("parallel_limit") or 1), remaining))
        eta = round(sum(durations) / len(durations) * remaining / lanes, 1)
    else:
        eta = None
    if running:
        current = running[0]
        step = current.get("message") or f"running {current['name']}"
    elif remaining == 0:
        step = f"{wf['status']}"
    else:
        step = "waiting for dependencies"
    return {
        "workflow_id": wf["id"],
        "status": wf["status"],
        "progress": progress_of(tasks),
        "current_step": step,
        "total_steps": len(tasks),
        "completed_steps": len(finished),
        "running_steps": len(running),
        "estimated_time_remaining": eta,
    }
