"""How a command prints what the API answered: a readable table by default, or the API's
own data as JSON or YAML for scripts (``--output json|yaml``: the same field names)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import typer
import yaml
from rich.table import Table

from provisioning.cli.common import console

Cell = Callable[[dict[str, Any]], Any]
Column = tuple[str, str | Cell]  # a heading, and the field (or a function of the item)


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OUTPUT_OPTION = typer.Option(
    Output.table, "--output", "-o", help="table (readable), or json / yaml (the API's data, for scripts)"
)


def dump(data: Any, fmt: Output) -> str:
    if fmt is Output.yaml:
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False))
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def _print(renderable: Any) -> None:
    """A table on stdout; in a pipe without the padding that ends its lines."""
    out = console()
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    print("\n".join(line.rstrip() for line in captured.get().splitlines()), flush=True)


def show_list(
    items: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: Output,
    *,
    total: int | None = None,
    empty: str = "nothing to show",
) -> None:
    """A listing: a table (with ``shown of total`` when there are more), or the items."""
    if fmt is not Output.table:
        print(dump(list(items), fmt), end="" if fmt is Output.yaml else "\n")
        return
    if not items:
        print(empty)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for heading, _ in columns:
        table.add_column(heading, overflow="fold")
    for item in items:
        table.add_row(*(_text(get(item) if callable(get) else item.get(get)) for _, get in columns))
    _print(table)
    if total is not None and total > len(items):
        print(f"({len(items)} of {total}; --limit N or --all for more)")


def show_item(item: Any, fmt: Output, *, fields: Sequence[str] | None = None) -> None:
    """One object: ``key  value`` lines, or the object itself."""
    if fmt is not Output.table or not isinstance(item, dict):
        print(dump(item, Output.json if fmt is Output.table else fmt), end="" if fmt is Output.yaml else "\n")
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in fields or list(item):
        if key in item:
            table.add_row(key, _text(item[key]))
    _print(table)
