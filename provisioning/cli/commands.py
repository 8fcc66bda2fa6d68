"""Commands that call one route on one item (``provisioning tasks show ID``,
``provisioning webhooks delete ID``) or list one collection, built once instead of written
out each time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from provisioning.cli.common import Session, confirm, run, say
from provisioning.cli.output import OUTPUT_OPTION, Output, show_item, show_list
from provisioning.client import Client

ID_ARGUMENT = typer.Argument(..., metavar="ID")
YES_OPTION = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")
LIMIT = typer.Option(50, "--limit", min=1, help="at most this many")
ALL = typer.Option(False, "--all", help="every one, following the pages")
Render = Callable[[Any, Output], None]


def client_of(s: Session, service: str) -> Client:
    """``cc`` (the control center) or ``orch`` (the orchestrator)."""
    return s.cc if service == "cc" else s.orch


def listing(
    ctx: typer.Context,
    service: str,
    path: str,
    params: dict[str, Any],
    columns: list[Any],
    output: Output,
    limit: int,
    every: bool,
    empty: str,
) -> None:
    """A paged listing (``--limit N`` or ``--all``) shown as a table or the API's items."""

    def go(s: Session) -> Any:
        return client_of(s, service).collect(path, params, limit=limit, every=every)

    page = run(ctx, go)
    show_list(page.items, columns, output, total=page.total, empty=empty)


def item_command(
    group: typer.Typer, name: str, doc: str, service: str, method: str, path: str, render: Render = show_item
) -> None:
    """``GROUP NAME ID [-o json|yaml]``: call ``method path`` (``{id}`` in it) and show the answer."""

    def command(ctx: typer.Context, item_id: str = ID_ARGUMENT, output: Output = OUTPUT_OPTION) -> None:
        render(run(ctx, lambda s: client_of(s, service).call(method, path.format(id=item_id))), output)

    command.__doc__ = doc
    group.command(name)(command)


def delete_command(group: typer.Typer, doc: str, service: str, path: str, what: str) -> None:
    """``GROUP delete ID [--yes]``: ask, then ``DELETE path``."""

    def command(ctx: typer.Context, item_id: str = ID_ARGUMENT, yes: bool = YES_OPTION) -> None:
        confirm(f"Delete {what} {item_id}?", yes)
        say(str(run(ctx, lambda s: client_of(s, service).call("DELETE", path.format(id=item_id)))))

    command.__doc__ = doc
    group.command("delete")(command)
