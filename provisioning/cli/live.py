"""Following a batch to its end: a live view that redraws in place on a terminal (rich),
one line per transition anywhere else (CI logs, pipes).

The state comes from the REST view of the batch, then from the orchestrator's
WebSocket (``/ws?events=task,batch&workflow_id=…``). A dropped connection is
resumed with ``since=<last event id>`` so no event is lost; a ``gap`` (the server no
longer holds those events) reloads the REST view. A server without the stream
(or refusing it) is polled instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from provisioning.cli.common import Session, console, elapsed
from provisioning.client import ApiError, ServerDown

FINAL_BATCH = frozenset({"Completed", "Failed", "Cancelled"})
ACTIVE_OP = frozenset({"Running", "RollingBack"})
FINAL_OP = frozenset({"Completed", "Failed", "Cancelled", "RolledBack"})
# Where an operation can go from a status a snapshot may show ahead of the stream (the
# orchestrator's table, orchestrator/states.py): an event to anywhere else is older
# than the snapshot (a batch document comes from the engine's memory, which moves
# before a change's event goes out), so it is not applied.
_NEXT_OP = {
    "Completed": frozenset({"RollingBack"}),
    "Failed": frozenset({"RollingBack"}),
    "Cancelled": frozenset(),
    "RolledBack": frozenset(),
    "RollingBack": frozenset({"RolledBack", "Failed"}),
}
STATUS_STYLE = {
    "Pending": "dim",
    "Running": "cyan",
    "Completed": "green",
    "Failed": "red",
    "Cancelled": "yellow",
    "RollingBack": "magenta",
    "RolledBack": "magenta",
}
RECENT_ROWS = 10  # finished operations kept on screen below the running ones
POLL_S = 0.5  # the interval of the fallback that polls the REST view
REFRESH_S = 0.25  # how often the live view redraws (elapsed times move)
RECONNECT_GIVE_UP_S = 60.0  # a server away longer than this ends the watch (exit 3)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BatchView:
    """What is known of a batch: its REST view, kept current by events."""

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch: dict[str, Any] = {}
        self.ops: dict[str, dict[str, Any]] = {}
        self.finished: list[str] = []  # operations in the order they finished
        self.reset(batch)

    def reset(self, batch: dict[str, Any]) -> list[str]:
        """Take a fresh REST view in; returns the transitions it shows, as lines."""
        before = {k: op.get("status") for k, op in self.ops.items()}
        self.batch = dict(batch)
        ops = batch.get("operations")
        if isinstance(ops, list):
            self.ops = {str(op["id"]): dict(op) for op in ops}
        lines = [self.line(op) for k, op in self.ops.items() if k in before and before[k] != op.get("status")]
        finished = [k for k, op in self.ops.items() if op.get("status") in FINAL_OP]
        finished.sort(key=lambda k: str(self.ops[k].get("completed_at") or ""))
        self.finished = finished
        return lines

    @property
    def status(self) -> str:
        return str(self.batch.get("status", ""))

    @property
    def done(self) -> bool:
        return self.status in FINAL_BATCH

    @property
    def total(self) -> int:
        total = self.batch.get("total_operations")
        return int(total) if isinstance(total, int) else len(self.ops)

    def counts(self) -> Counter[str]:
        """Operations by status: from the operations when all are known, else the batch's counts."""
        if len(self.ops) >= self.total or not isinstance(self.batch.get("counts"), dict):
            return Counter(str(op.get("status")) for op in self.ops.values())
        return Counter({str(k): int(v) for k, v in self.batch["counts"].items()})

    def progress(self) -> float:
        if self.ops and len(self.ops) >= self.total:
            return sum(float(op.get("progress") or 0) for op in self.ops.values()) / len(self.ops)
        return float(self.batch.get("progress") or 0)

    def _op(self, data: dict[str, Any]) -> dict[str, Any] | None:
        name = data.get("operation_id")
        if name is None and data.get("task_id") is not None:
            name = next((k for k, op in self.ops.items() if op.get("task_id") == data["task_id"]), None)
        if name is None:
            return None
        return self.ops.setdefault(str(name), {"id": str(name), "status": "Pending", "progress": 0.0})

    def apply(self, event: dict[str, Any]) -> list[str]:
        """Take an event in; returns the transitions it made, as lines for the line mode."""
        kind = event.get("event_type")
        data = event.get("data") or {}
        status = data.get("status") or (event.get("metadata") or {}).get("status")
        if kind == "BatchStatusChanged":
            if data.get("batch_id") not in (None, self.batch.get("batch_id")):
                return []
            for key in ("error", "rollback"):
                if key in data:
                    self.batch[key] = data[key]
            if status:
                self.batch["status"] = status
            return []  # the batch's end is reported by the closing lines
        op = self._op(data)
        if op is None:
            return []
        if kind == "OperationProgress":
            op["progress"] = data.get("progress", op.get("progress"))
            op["message"] = data.get("message")
            return []
        if kind != "TaskStatusChanged" or not status:
            return []
        before = op.get("status")
        if status != before and status not in _NEXT_OP.get(str(before), (status,)):
            return []  # older than what the view shows
        self._move_counts(before, status)
        op["status"] = status
        for key in ("attempt", "progress", "error", "output"):
            if key in data:
                op[key] = data[key]
        if status == "Running" and not op.get("started_at"):
            op["started_at"] = now_iso()
        if status in FINAL_OP:
            op["completed_at"] = op.get("completed_at") or now_iso()
            if status == "Completed":
                op["progress"] = 100.0
            with contextlib.suppress(ValueError):
                self.finished.remove(str(op["id"]))
            self.finished.append(str(op["id"]))
        elif status == "Running":
            op["completed_at"] = None
        if before == status:
            return []
        return [self.line(op)]

    def _move_counts(self, before: Any, after: str) -> None:
        counts = self.batch.get("counts")
        if isinstance(counts, dict) and before != after:
            if before:
                counts[before] = max(0, int(counts.get(before, 0)) - 1)
            counts[after] = int(counts.get(after, 0)) + 1

    @staticmethod
    def line(op: dict[str, Any]) -> str:
        attempt = f"attempt {op.get('attempt')}" if op.get("attempt") else ""
        error = f"  {op['error']}" if op.get("error") and op.get("status") != "Running" else ""
        return (
            f"{time.strftime('%H:%M:%S')} {op['id']:<28} {op.get('status', ''):<11} "
            f"{attempt:<10} {float(op.get('progress') or 0):5.1f}%{error}"
        )

    def rows(self) -> list[dict[str, Any]]:
        """The running operations, then the recently finished ones (newest last)."""
        active = [op for op in self.ops.values() if op.get("status") in ACTIVE_OP]
        recent = [self.ops[k] for k in self.finished[-RECENT_ROWS:] if k in self.ops]
        if len(self.ops) <= RECENT_ROWS + 5:  # a small batch: every operation, in order
            return list(self.ops.values())
        return recent + active

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{n} {s}" for s, n in sorted(counts.items()) if n]
        return f"{sum(counts.values())}/{self.total} operations: " + ", ".join(parts)


def bar(pct: float, width: int = 24) -> str:
    filled = round(width * max(0.0, min(100.0, pct)) / 100)
    return "[" + "#" * filled + "." * (width - filled) + f"] {pct:5.1f}%"


def final_lines(batch: dict[str, Any]) -> list[str]:
    """The closing lines of a watch, the same in both modes."""
    lines = [f"batch {batch.get('batch_id')}: {batch.get('status')} {bar(float(batch.get('progress') or 0))}"]
    if batch.get("error"):
        lines.append(f"error: {batch['error']}")
    if batch.get("rollback"):
        lines.append(f"rollback: {json.dumps(batch['rollback'])}")
    return lines


class Screen:
    """The live view's renderable: the header, one row per operation shown, the overall bar."""

    def __init__(self, view: BatchView) -> None:
        self.view = view

    def __rich__(self) -> RenderableType:
        view = self.view
        b = view.batch
        title = Text.assemble(
            ("batch ", "bold"),
            (str(b.get("name") or ""), "bold"),
            f" ({b.get('batch_id')})  ",
            (view.status, STATUS_STYLE.get(view.status, "")),
            f"  {elapsed(b.get('started_at') or b.get('created_at'), b.get('completed_at'))}",
        )
        table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
        for heading in ("OPERATION", "STATUS", "ATTEMPT", "ELAPSED", "PROGRESS", "", "MESSAGE"):
            table.add_column(heading, no_wrap=True)
        for op in view.rows():
            status = str(op.get("status", ""))
            pct = float(op.get("progress") or 0)
            note = op.get("error") if status in ("Failed", "Cancelled") else op.get("message")
            table.add_row(
                str(op["id"]),
                Text(status, style=STATUS_STYLE.get(status, "")),
                str(op.get("attempt") or ""),
                elapsed(op.get("started_at"), op.get("completed_at")),
                ProgressBar(total=100, completed=pct, width=20),
                f"{pct:5.1f}%",
                Text(str(note or "")[:60], style="red" if status == "Failed" else "dim"),
            )
        overall = Table.grid(padding=(0, 1))
        overall.add_row(
            "overall", ProgressBar(total=100, completed=view.progress(), width=40), f"{view.progress():5.1f}%"
        )
        counts = view.counts()
        tally = Text("  ".join(f"{s} {counts[s]}" for s in STATUS_STYLE if counts.get(s)))
        return Group(title, table, overall, tally)


class Sink:
    """Where a watch reports: the line mode prints transitions as they come."""

    def __init__(self, out: Console) -> None:
        self.out = out

    def start(self, view: BatchView) -> None:
        print(
            f"watching batch {view.batch.get('batch_id')} ({view.batch.get('name')}): "
            f"{view.total} operations, {view.status}",
            flush=True,
        )
        for op in view.ops.values():
            if op.get("status") != "Pending":
                print(BatchView.line(op), flush=True)

    def transitions(self, lines: list[str]) -> None:
        for line in lines:
            print(line, flush=True)

    def tick(self) -> None:
        """Nothing to redraw in line mode."""

    def stop(self, view: BatchView) -> None:
        for line in final_lines(view.batch):
            print(line, flush=True)


class LiveSink(Sink):
    """The terminal's view, redrawn in place."""

    def __init__(self, out: Console) -> None:
        super().__init__(out)
        self.live: Live | None = None
        self.screen: Screen | None = None

    def start(self, view: BatchView) -> None:
        self.screen = Screen(view)
        self.live = Live(self.screen, console=self.out, auto_refresh=False, transient=False)
        self.live.start()
        self.live.refresh()

    def transitions(self, lines: list[str]) -> None:
        self.tick()

    def tick(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def pause(self) -> None:
        """Stop redrawing (Ctrl-C asks a question below the view)."""
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
            self.live = None

    def stop(self, view: BatchView) -> None:
        if self.screen is not None:
            self.screen.view = view
        self.pause()
        for line in final_lines(view.batch):
            print(line, flush=True)


def sink_for_stdout() -> Sink:
    out = console()
    return LiveSink(out) if out.is_terminal else Sink(out)


async def follow(s: Session, batch_id: str, sink: Sink) -> dict[str, Any]:
    """Report a batch's changes to ``sink`` until it ends; returns its final REST view."""
    path = f"/batch/operations/{batch_id}"
    view: BatchView | None = None
    last_id: int | None = None
    away_since: float | None = None
    started = False

    async def snapshot() -> BatchView:
        nonlocal view, started
        batch = await s.orch.call("GET", path)
        lines: list[str] = []
        if view is None:
            view = BatchView(batch)
        else:
            lines = view.reset(batch)
        if not started:
            started = True
            sink.start(view)
        else:
            sink.transitions(lines)
        return view

    ticker: asyncio.Task[None] | None = None

    async def tick_forever() -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            sink.tick()

    try:
        ticker = asyncio.create_task(tick_forever())
        while True:
            connected = False
            try:
                params = {"events": "task,batch", "workflow_id": batch_id, "since": last_id}
                async with s.orch.websocket("/ws", params) as ws:
                    connected = True
                    away_since = None
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            break
                        doc = json.loads(msg.data)
                        if doc.get("type") == "welcome":
                            if last_id is None and doc.get("last_event_id") is not None:
                                last_id = int(doc["last_event_id"])
                            if view is None or last_id is None:
                                view = await snapshot()
                        elif doc.get("type") == "gap":
                            view = await snapshot()
                        elif "event_type" in doc:
                            last_id = int(doc.get("id", last_id or 0))
                            if view is None:
                                view = await snapshot()
                            sink.transitions(view.apply(doc))
                        if view is not None and view.done:
                            break
                    close = ws.close_code
                if view is not None and view.done:
                    break
                if close == 4401 and not await s.orch.refresh():
                    raise ApiError(401, "the live stream closed: the session ended; log in again")
            except ApiError as exc:
                if connected or exc.status not in (403, 404, 405):
                    raise
                view = await _poll(s, path, snapshot)  # no stream here: poll the REST view
                break
            except ServerDown:
                away_since = away_since or time.monotonic()
                if time.monotonic() - away_since > RECONNECT_GIVE_UP_S:
                    raise
            await asyncio.sleep(0.2)
    finally:
        if ticker is not None:
            ticker.cancel()
    final: dict[str, Any] = await s.orch.call("GET", path)
    if view is None:
        view = BatchView(final)
    view.reset(final)
    sink.stop(view)
    return final


async def _poll(s: Session, path: str, snapshot: Callable[[], Any]) -> BatchView:
    while True:
        view: BatchView = await snapshot()
        if view.done:
            return view
        await asyncio.sleep(POLL_S)
