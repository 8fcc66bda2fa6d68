"""``batch …`` and the single-purpose ``servers|taskserv|cluster create`` workflows."""

from __future__ import annotations

import sys
from typing import Any

import typer

from provisioning.cli.common import (
    EXIT_FAILED,
    Session,
    console,
    fail,
    load_document,
    merge,
    parse_assignments,
    run,
    say,
    warn,
)
from provisioning.cli.graph import GraphFormat, render
from provisioning.cli.live import FINAL_BATCH, FINAL_OP, LiveSink, Sink, follow, sink_for_stdout
from provisioning.cli.output import OUTPUT_OPTION, Column, Output, show_item, show_list
from provisioning.client import ApiError

batch_app = typer.Typer(help="Submit, follow, inspect and cancel batches.", no_args_is_help=True)
STATUSES = "Pending, Running, Completed, Failed, Cancelled"
EXIT_INTERRUPTED = 130
SET_OPTION = typer.Option(
    None, "--set", help="override a field: --set parallel_limit=10 (repeatable; the value is YAML)"
)
FORMAT_OPTION = typer.Option(GraphFormat.ascii, "--format", "-f", help="ascii, dot (Graphviz) or mermaid")
SERVER_NAMES = typer.Option(None, "--server", help="a server name (repeatable; default one server)")


def exit_code_of(status: str) -> int:
    """0 for a completed batch, 1 for one that failed or was cancelled."""
    return 0 if status == "Completed" else EXIT_FAILED


def operations_count(batch: dict[str, Any]) -> int:
    total = batch.get("total_operations")
    return int(total) if isinstance(total, int) else len(batch.get("operations") or [])


def _annotate(exc: ApiError, body: dict[str, Any]) -> ApiError:
    """Name the operation a field path such as ``operations.2.type`` points at."""
    details = exc.details if isinstance(exc.details, dict) else {}
    found = body.get("operations")
    ops: list[Any] = found if isinstance(found, list) else []
    for f in details.get("fields") or []:
        if not isinstance(f, dict) or f.get("operation"):
            continue
        parts = str(f.get("field", "")).split(".")
        if len(parts) > 1 and parts[0] == "operations" and parts[1].isdigit() and int(parts[1]) < len(ops):
            op = ops[int(parts[1])]
            if isinstance(op, dict) and op.get("id"):
                f["operation"] = op["id"]
    return exc


# -- watching ------------------------------------------------------------------------------------


def watch_batch(ctx: typer.Context, batch_id: str) -> int:
    """Follow a batch to its end (live view or lines); Ctrl-C asks: cancel it, or detach."""
    sink = sink_for_stdout()
    try:
        final = run(ctx, lambda s: follow(s, batch_id, sink))
    except KeyboardInterrupt:
        if isinstance(sink, LiveSink):
            sink.pause()
        return _interrupted(ctx, batch_id)
    return exit_code_of(str(final.get("status")))


def _interrupted(ctx: typer.Context, batch_id: str) -> int:
    if not sys.stdin.isatty():
        warn(
            f"detached: batch {batch_id} keeps running; follow it with 'provisioning batch watch {batch_id}'"
        )
        return EXIT_INTERRUPTED
    try:
        answer = typer.prompt(
            f"\nBatch {batch_id} is still running. [c]ancel it or [d]etach (it keeps running)?", default="d"
        )
    except (KeyboardInterrupt, EOFError, typer.Abort):
        answer = "d"
    if not answer.strip().lower().startswith("c"):
        say(f"detached: batch {batch_id} keeps running; follow it with 'provisioning batch watch {batch_id}'")
        return EXIT_INTERRUPTED

    async def cancel_and_follow(s: Session) -> dict[str, Any]:
        try:
            await s.orch.call("POST", f"/batch/operations/{batch_id}/cancel")
        except ApiError as exc:
            if exc.status != 409:  # it ended meanwhile
                raise
        say(f"cancelling batch {batch_id}…")
        return await follow(s, batch_id, Sink(console()))

    final = run(ctx, cancel_and_follow)
    return exit_code_of(str(final.get("status")))


# -- batch commands -------------------------------------------------------------------------------


@batch_app.command("submit")
def submit(
    ctx: typer.Context,
    file: str = typer.Argument(..., help="the batch: a JSON or YAML file ('-' reads stdin)"),
    check: bool = typer.Option(False, "--check", help="plan only: print the generations, run nothing"),
    watch: bool = typer.Option(False, "--watch", "-w", help="follow it live until it ends"),
    assignments: list[str] | None = SET_OPTION,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Submit a batch file; --check prints the plan, --watch follows it.

    Exit codes with --watch: 0 completed, 1 failed or cancelled, 2 invalid batch,
    3 server down.

    \b
    Examples:
      provisioning batch submit examples/multi_cloud_deployment.json --watch
      provisioning batch submit deploy.yaml --set parallel_limit=10 --check
    """
    body = load_document(file, "batch file")
    if not isinstance(body, dict):
        fail(f"{file}: a batch file holds one object with name and operations")
    merge(body, parse_assignments(assignments or []))
    if check:
        body["check_mode"] = True

    async def go(s: Session) -> Any:
        try:
            return await s.orch.call("POST", "/batch/execute", body)
        except ApiError as exc:
            raise _annotate(exc, body) from None

    data = run(ctx, go)
    if body.get("check_mode"):
        _show_plan(data.get("plan", data), output)
        return
    if output is not Output.table and not watch:
        show_item(data, output)
        return
    say(f"batch {data['batch_id']} submitted ({len(data.get('operations') or [])} operations)")
    if watch:
        raise typer.Exit(watch_batch(ctx, str(data["batch_id"])))


def _show_plan(plan: dict[str, Any], output: Output) -> None:
    if output is not Output.table:
        show_item(plan, output)
        return
    by_id = {op["id"]: op for op in plan.get("operations") or []}
    rows = []
    for n, generation in enumerate(plan.get("generations") or [], start=1):
        for op_id in generation:
            op = by_id.get(op_id, {"id": op_id})
            deps = [d["id"] if isinstance(d, dict) else d for d in op.get("dependencies") or []]
            rows.append({"generation": n, **op, "dependencies": deps})
    say(
        f"plan of {plan.get('name')}: {len(by_id)} operations in {len(plan.get('generations') or [])} "
        f"generations, parallel_limit {plan.get('parallel_limit')}, "
        f"rollback {'on' if plan.get('rollback_enabled') else 'off'}"
    )
    show_list(
        rows,
        [
            ("GEN", "generation"),
            ("OPERATION", "id"),
            ("TYPE", "type"),
            ("PROVIDER", "provider"),
            ("DEPENDS ON", "dependencies"),
            ("WOULD", "would"),
        ],
        Output.table,
    )


BATCH_COLUMNS: list[Column] = [
    ("BATCH ID", "batch_id"),
    ("NAME", "name"),
    ("STATUS", "status"),
    ("PROGRESS", lambda b: f"{float(b.get('progress') or 0):.1f}%"),
    ("OPS", operations_count),
    ("CREATED", "created_at"),
]


@batch_app.command("list")
def list_batches(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help=f"only batches in this status ({STATUSES})"),
    limit: int = typer.Option(20, "--limit", min=1, help="at most this many (newest first)"),
    every: bool = typer.Option(False, "--all", help="every batch, following the pages"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Batches, newest first.

    \b
    Examples:
      provisioning batch list --status Failed
      provisioning batch list --all -o json | jq '.[].batch_id'
    """
    page = run(
        ctx, lambda s: s.orch.collect("/batch/operations", {"status": status}, limit=limit, every=every)
    )
    show_list(page.items, BATCH_COLUMNS, output, total=page.total, empty="no batches")


@batch_app.command("status")
def status(
    ctx: typer.Context,
    batch_id: str = typer.Argument(..., metavar="ID"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """One batch: its status, progress, rollback and operations.

    \b
    Example:
      provisioning batch status 5f0c… -o yaml
    """
    batch = run(ctx, lambda s: s.orch.call("GET", f"/batch/operations/{batch_id}"))
    if output is not Output.table:
        show_item(batch, output)
        return
    show_item(
        batch,
        output,
        fields=[
            "batch_id",
            "name",
            "kind",
            "status",
            "progress",
            "created_at",
            "started_at",
            "completed_at",
            "parallel_limit",
            "rollback_enabled",
            "error",
            "rollback",
            "checkpoint_id",
            "counts",
            "total_operations",
        ],
    )
    if batch.get("operations"):
        say("")
        show_list(
            batch["operations"],
            [
                ("OPERATION", "id"),
                ("STATUS", "status"),
                ("ATTEMPT", "attempt"),
                ("PROGRESS", lambda o: f"{float(o.get('progress') or 0):.1f}%"),
                ("DEPENDS ON", "dependencies"),
                ("ERROR", "error"),
            ],
            Output.table,
        )


@batch_app.command("watch")
def watch(ctx: typer.Context, batch_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Follow a batch until it ends (live on a terminal, one line per change otherwise).

    Exit codes: 0 completed, 1 failed or cancelled, 3 server down; Ctrl-C offers to
    cancel the batch or detach (130).

    \b
    Example:
      provisioning batch watch 5f0c…
    """
    raise typer.Exit(watch_batch(ctx, batch_id))


@batch_app.command("cancel")
def cancel(ctx: typer.Context, batch_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Cancel a running batch (its running operations are stopped).

    \b
    Example:
      provisioning batch cancel 5f0c…
    """
    message = run(ctx, lambda s: s.orch.call("POST", f"/batch/operations/{batch_id}/cancel"))
    say(f"batch {batch_id}: {message}")


@batch_app.command("graph")
def graph(
    ctx: typer.Context,
    batch_id: str = typer.Argument(..., metavar="ID"),
    fmt: GraphFormat = FORMAT_OPTION,
) -> None:
    """A batch's dependency graph, with each operation's status.

    \b
    Examples:
      provisioning batch graph 5f0c…
      provisioning batch graph 5f0c… --format dot | dot -Tsvg > batch.svg
      provisioning batch graph 5f0c… --format mermaid
    """
    batch = run(ctx, lambda s: s.orch.call("GET", f"/batch/operations/{batch_id}"))
    say(render(batch, fmt))


@batch_app.command("logs")
def logs(
    ctx: typer.Context,
    batch_id: str = typer.Argument(..., metavar="ID"),
    operation: str = typer.Option(None, "--operation", help="only this operation"),
    follow_: bool = typer.Option(False, "--follow", "-f", help="keep printing as operations finish"),
) -> None:
    """The output and errors of a batch's operations.

    \b
    Examples:
      provisioning batch logs 5f0c…
      provisioning batch logs 5f0c… --operation database --follow
    """

    async def go(s: Session) -> int:
        batch = await s.orch.call("GET", f"/batch/operations/{batch_id}")
        ops = batch.get("operations") or []
        if operation and operation not in {o["id"] for o in ops}:
            fail(f"batch {batch_id} has no operation {operation!r}", 1)
        printed: set[tuple[str, str, int]] = set()
        for op in ops:
            _print_log(op, operation, printed)
        if not follow_ or batch.get("status") in FINAL_BATCH:
            return 0
        final = await follow(s, batch_id, _LogSink(operation, printed))
        return exit_code_of(str(final.get("status")))

    raise typer.Exit(run(ctx, go))


def _print_log(op: dict[str, Any], only: str | None, printed: set[tuple[str, str, int]]) -> None:
    if only and op.get("id") != only:
        return
    status = str(op.get("status"))
    key = (str(op.get("id")), status, int(op.get("attempt") or 0))
    if key in printed or (status not in FINAL_OP and not op.get("output") and not op.get("error")):
        return
    printed.add(key)
    say(f"== {op.get('id')} ({status}, attempt {op.get('attempt') or 0}) ==")
    if op.get("output"):
        say(str(op["output"]).rstrip())
    if op.get("error"):
        say(f"error: {op['error']}")


class _LogSink(Sink):
    """``logs --follow``: each operation's output and error as it finishes."""

    def __init__(self, only: str | None, printed: set[tuple[str, str, int]]) -> None:
        self.only = only
        self.printed = printed
        self.view: Any = None

    def start(self, view: Any) -> None:
        self.view = view

    def transitions(self, lines: list[str]) -> None:
        for op in list(self.view.ops.values()):
            if op.get("status") in FINAL_OP:
                _print_log(op, self.only, self.printed)

    def stop(self, view: Any) -> None:
        for op in view.ops.values():
            _print_log(op, self.only, self.printed)
        say(f"batch {view.batch.get('batch_id')}: {view.status}")


# -- single-purpose workflows ---------------------------------------------------------------------


def _workflow(
    ctx: typer.Context, path: str, body: dict[str, Any], watch: bool, check: bool, output: Output
) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    if check:
        body["check_mode"] = True
    data = run(ctx, lambda s: s.orch.call("POST", path, body))
    if check:
        _show_plan(data.get("plan", data), output)
        return
    if output is not Output.table:
        show_item({"workflow_id": data}, output)
    else:
        say(f"workflow {data} submitted")
    if watch:
        raise typer.Exit(watch_batch(ctx, str(data)))


INFRA = typer.Option(..., "--infra", help="the infrastructure's name")
PROVIDER = typer.Option(None, "--provider", help="the provider (default: local, the simulated cloud)")
SETTINGS = typer.Option(None, "--settings", help="the settings file the provider reads")
CHECK = typer.Option(False, "--check", help="plan only")
WATCH = typer.Option(False, "--watch", "-w", help="follow it live until it ends")
OPERATION = typer.Option("create", "--operation", help="create, update or delete")

servers_app = typer.Typer(help="Server workflows (POST /workflows/servers/create).", no_args_is_help=True)
taskserv_app = typer.Typer(
    help="Task-service workflows (POST /workflows/taskserv/create).", no_args_is_help=True
)
cluster_app = typer.Typer(help="Cluster workflows (POST /workflows/cluster/create).", no_args_is_help=True)


@servers_app.command("create")
def servers_create(
    ctx: typer.Context,
    infra: str = INFRA,
    server: list[str] | None = SERVER_NAMES,
    plan: str = typer.Option(None, "--plan", help="the server plan, e.g. 2xCPU-4GB"),
    zone: str = typer.Option(None, "--zone"),
    provider: str = PROVIDER,
    settings: str = SETTINGS,
    check: bool = CHECK,
    watch: bool = WATCH,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Create servers for an infrastructure (a one-operation workflow).

    \b
    Example:
      provisioning servers create --infra demo --server web-01 --server web-02 --watch
    """
    wanted = [{"name": n, "plan": plan, "zone": zone} for n in server or []]
    servers = [{k: v for k, v in s.items() if v is not None} for s in wanted] or None
    body = {"infra": infra, "servers": servers, "provider": provider, "settings": settings}
    _workflow(ctx, "/workflows/servers/create", body, watch, check, output)


def _named_workflow(group: typer.Typer, path: str, field: str, what: str, doc: str) -> None:
    """``GROUP create NAME --infra …``: a one-operation workflow on a named target."""

    def create(
        ctx: typer.Context,
        name: str = typer.Argument(..., metavar=field.upper(), help=what),
        infra: str = INFRA,
        operation: str = OPERATION,
        provider: str = PROVIDER,
        settings: str = SETTINGS,
        check: bool = CHECK,
        watch: bool = WATCH,
        output: Output = OUTPUT_OPTION,
    ) -> None:
        body = {
            "infra": infra,
            field: name,
            "operation": operation,
            "provider": provider,
            "settings": settings,
        }
        _workflow(ctx, path, body, watch, check, output)

    create.__doc__ = doc
    group.command("create")(create)


_named_workflow(
    taskserv_app,
    "/workflows/taskserv/create",
    "taskserv",
    "the task service, e.g. kubernetes",
    """Install (or update, delete) a task service on an infrastructure.

    \b
    Example:
      provisioning taskserv create kubernetes --infra demo --watch
    """,
)
_named_workflow(
    cluster_app,
    "/workflows/cluster/create",
    "cluster_type",
    "the cluster type, e.g. buildkit",
    """Build (or update, delete) a cluster on an infrastructure.

    \b
    Example:
      provisioning cluster create buildkit --infra demo --check
    """,
)
