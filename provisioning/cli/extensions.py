"""``provisioning extensions list|show|enable|disable``: the orchestrator's extensions
(``GET /ext/status``, ``GET /ext/{id}/health``, ``POST /ext/{id}/enable|disable``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer

from provisioning.cli.common import EXIT_FAILED, Session, fail, run, say
from provisioning.cli.output import OUTPUT_OPTION, Column, Output, show_item, show_list
from provisioning.client import ApiError

extensions_app = typer.Typer(
    help="The orchestrator's extensions: state, metrics, health; enable or disable (admin).",
    no_args_is_help=True,
)

EXT_ID = typer.Argument(..., metavar="ID", help="the extension's id (see 'provisioning extensions list')")


def _metric(entry: dict[str, Any], name: str) -> Any:
    return (entry.get("metrics") or {}).get(name)


COLUMNS: list[Column] = [
    ("ID", lambda e: (e.get("info") or {}).get("id")),
    ("STATE", "state"),
    ("VERSION", lambda e: (e.get("info") or {}).get("version")),
    ("CAPABILITIES", "capabilities"),
    ("LOADED MS", "loaded_ms"),
    ("REQUESTS", lambda e: _metric(e, "requests_total")),
    ("ERRORS", lambda e: _metric(e, "errors_total")),
]


def _path(ext_id: str, tail: str) -> str:
    return f"/ext/{quote(ext_id, safe='')}/{tail}"


async def _status(s: Session) -> dict[str, Any]:
    status: dict[str, Any] = await s.orch.raw("/ext/status")
    return status


def _entry(status: dict[str, Any], ext_id: str) -> dict[str, Any]:
    entry = (status.get("extensions") or {}).get(ext_id)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(status.get("extensions") or {})) or "none"
        raise ApiError(404, f"no extension {ext_id!r} (extensions: {known})")
    return entry


@extensions_app.command("list")
def extensions_list(ctx: typer.Context, output: Output = OUTPUT_OPTION) -> None:
    """Every discovered extension: state, version, capabilities, load time, requests, errors.

    With -o json|yaml: the whole of GET /ext/status (extensions by id, duplicates,
    discovery sources and the counts).

    \b
    Examples:
      provisioning extensions list
      provisioning extensions list -o json | jq '.extensions[] | select(.state == "failed")'
    """
    status = run(ctx, _status)
    if output is not Output.table:
        show_item(status, output)
        return
    entries = [e for _, e in sorted((status.get("extensions") or {}).items())]
    show_list(entries, COLUMNS, output, empty="no extensions discovered")
    duplicates = status.get("duplicates") or []
    say(
        f"{status.get('total_extensions', len(entries))} extensions: "
        f"{status.get('loaded_extensions', 0)} loaded, {status.get('failed_extensions', 0)} failed"
        + (f" ({len(duplicates)} duplicate ids refused; see -o json)" if duplicates else "")
    )


@extensions_app.command("show")
def extensions_show(ctx: typer.Context, ext_id: str = EXT_ID, output: Output = OUTPUT_OPTION) -> None:
    """One extension: its status entry and its health (GET /ext/ID/health).

    Asking for the health of an extension that is pending (not loaded yet) loads it,
    like its first request would.

    \b
    Examples:
      provisioning extensions show observability
      provisioning extensions show mcp_http -o json
    """

    async def go(s: Session) -> dict[str, Any]:
        entry = _entry(await _status(s), ext_id)
        health = await s.orch.raw(_path(ext_id, "health"))
        return {"extension": entry, "health": health}

    shown = run(ctx, go)
    if output is not Output.table:
        show_item(shown, output)
        return
    entry, health = shown["extension"], shown["health"]
    info = entry.get("info") or {}
    metrics = entry.get("metrics") or {}
    flat = {
        "id": info.get("id"),
        "name": info.get("name"),
        "version": info.get("version"),
        "description": info.get("description"),
        "state": entry.get("state"),
        "source": entry.get("source"),
        "capabilities": entry.get("capabilities"),
        "requested": entry.get("requested"),
        "eager": entry.get("eager"),
        "loaded_ms": entry.get("loaded_ms"),
        "requests": metrics.get("requests_total"),
        "errors": metrics.get("errors_total"),
        "latency_ms_sum": metrics.get("latency_ms_sum"),
        "error_type": entry.get("error_type"),
        "error": entry.get("error"),
        "health": health.get("status"),
        **{f"check {name}": value for name, value in (health.get("checks") or {}).items()},
    }
    show_item({k: v for k, v in flat.items() if v is not None}, output)


def _switch(ctx: typer.Context, ext_id: str, verb: str, output: Output) -> None:
    entry = run(ctx, lambda s: s.orch.call("POST", _path(ext_id, verb)))
    if output is not Output.table:
        show_item(entry, output)
    else:
        state = entry.get("state")
        note = " (loads on its first request)" if state == "pending" else ""
        if state == "loaded" and entry.get("loaded_ms") is not None:
            note = f" in {entry['loaded_ms']} ms"
        say(f"extension {ext_id}: {state}{note}")
    if verb == "enable" and entry.get("state") == "failed":
        fail(
            f"extension {ext_id} failed to load: {entry.get('error_type')}: {entry.get('error')}", EXIT_FAILED
        )


@extensions_app.command("enable")
def extensions_enable(ctx: typer.Context, ext_id: str = EXT_ID, output: Output = OUTPUT_OPTION) -> None:
    """Enable an extension and load it, without a restart (admin); exit 1 if it fails to load.

    \b
    Example:
      provisioning extensions enable events_demo
    """
    _switch(ctx, ext_id, "enable", output)


@extensions_app.command("disable")
def extensions_disable(ctx: typer.Context, ext_id: str = EXT_ID, output: Output = OUTPUT_OPTION) -> None:
    """Disable an extension and unload it, without a restart (admin); its routes answer 404.

    \b
    Example:
      provisioning extensions disable events_demo
    """
    _switch(ctx, ext_id, "disable", output)
