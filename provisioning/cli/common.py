"""What every client command shares: the global options, the two services' clients (with
the token refreshed transparently), running a coroutine, and errors as one line.

Exit codes: 0 done; 1 a server error or a batch that failed or was cancelled;
2 usage, validation (400/422) or local configuration; 3 a service that does not answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
import yaml
from rich.console import Console

from provisioning.cli.config import Credentials, CredentialsError, Target, parse_time, resolve
from provisioning.cli.start import EXIT_USAGE
from provisioning.client import ApiError, Client, ServerDown

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_DOWN = 3
REUSE_REFRESH_S = 10.0  # a token refreshed this recently is not refreshed again


@dataclass
class Options:
    """The root command's options (``provisioning --context prod batch list``)."""

    context: str | None = None
    server: str | None = None
    orchestrator: str | None = None
    token: str | None = None
    debug: bool = False
    config: str | None = None  # the services' TOML settings file (up, doctor, keys)


def options(ctx: typer.Context) -> Options:
    root = ctx.find_root()
    if not isinstance(root.obj, Options):
        root.obj = Options()
    return root.obj


def console(*, stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr): wide enough for tables in a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, width=None if tty else 200, soft_wrap=not tty, highlight=False)


def say(text: str) -> None:
    """One plain line on stdout."""
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then the exit code."""
    warn(f"provisioning: {message}")
    raise typer.Exit(code)


def confirm(question: str, yes: bool) -> None:
    """Ask before a change (``--yes`` answers for the user); a no ends the command, exit 1."""
    if yes:
        return
    try:
        confirmed = typer.confirm(question, default=False)
    except typer.Abort:
        confirmed = False
    if not confirmed:
        say("not confirmed: nothing was changed")
        raise typer.Exit(EXIT_FAILED)


# -- talking to the services ----------------------------------------------------------------


class Session:
    """The target of a command and a client for each service; one refresh shared by both."""

    def __init__(self, opts: Options, creds: Credentials, target: Target) -> None:
        self.opts = opts
        self.creds = creds
        self.target = target
        self.cc = Client(target.server, target.token, self._refresh if target.refreshable else None)
        self.orch = Client(target.orchestrator, target.token, self._refresh if target.refreshable else None)
        self._refreshed: str | None = None
        self._refreshed_at = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self) -> str | None:
        """Trade the context's refresh token for a new access token and save the rotated pair."""
        async with self._lock:
            if self._refreshed is not None and time.monotonic() - self._refreshed_at < REUSE_REFRESH_S:
                return self._refreshed  # both clients asked at once: one refresh serves them
            refresh = self.target.values.get("refresh_token")
            if not refresh:
                return None
            async with Client(self.target.server) as plain:
                try:
                    fresh = await plain.call("POST", "/auth/refresh", {"refresh_token": refresh})
                except ApiError:
                    return None
            values = {**self.target.values, **fresh}
            self.target.values = values
            self.creds.put(self.target.context, values, make_current=False)
            self._refreshed, self._refreshed_at = str(fresh["token"]), time.monotonic()
            for client in (self.cc, self.orch):
                client.token = self._refreshed
            return self._refreshed

    async def __aenter__(self) -> Session:
        await self.cc.__aenter__()
        await self.orch.__aenter__()
        if self.target.expiring():
            await self._refresh()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.orch.__aexit__(*exc)
        await self.cc.__aexit__(*exc)


def load_credentials() -> Credentials:
    try:
        return Credentials()
    except CredentialsError as exc:
        fail(str(exc))


def target_of(ctx: typer.Context) -> tuple[Credentials, Target]:
    opts = options(ctx)
    creds = load_credentials()
    try:
        target = resolve(
            creds, context=opts.context, server=opts.server, orchestrator=opts.orchestrator, token=opts.token
        )
    except CredentialsError as exc:
        fail(str(exc))
    return creds, target


@asynccontextmanager
async def session(ctx: typer.Context) -> AsyncIterator[Session]:
    creds, target = target_of(ctx)
    async with Session(options(ctx), creds, target) as s:
        yield s


def run(ctx: typer.Context, work: Callable[[Session], Awaitable[T]]) -> T:
    """Run ``work`` with a session; a server error is one line and an exit code."""

    async def go() -> T:
        async with session(ctx) as s:
            return await work(s)

    return run_coroutine(ctx, go)


def run_coroutine(ctx: typer.Context, go: Callable[[], Awaitable[T]]) -> T:
    debug = options(ctx).debug
    try:
        return asyncio.run(_awaited(go))
    except ApiError as exc:
        report_api_error(exc, debug)
        raise typer.Exit(EXIT_USAGE if exc.status in (400, 422) else EXIT_FAILED) from None
    except ServerDown as exc:
        warn(f"provisioning: {exc} (is the service running? check --server / PROVISIONING_URL)")
        if debug:
            traceback.print_exc()
        raise typer.Exit(EXIT_DOWN) from None
    except CredentialsError as exc:
        fail(str(exc))


async def _awaited(go: Callable[[], Awaitable[T]]) -> T:
    return await go()


def report_api_error(exc: ApiError, debug: bool = False) -> None:
    """``error (422): the message``; the fields a validation error names, one per line."""
    warn(f"error ({exc.status}): {exc.message}")
    details = exc.details if isinstance(exc.details, dict) else {}
    fields = details.get("fields")
    if isinstance(fields, list) and len(fields) > 0:
        for f in fields:
            if isinstance(f, dict):
                where = str(f.get("field", "?"))
                if f.get("operation"):
                    where += f" (operation {f['operation']!r})"
                warn(f"  {where}: {f.get('message', '')}")
    if isinstance(details.get("cycle"), list):
        warn("  cycle: " + " -> ".join(str(x) for x in details["cycle"]))
    if debug:
        if exc.code:
            warn(f"  code: {exc.code}")
        if exc.request_id:
            warn(f"  request id: {exc.request_id}")
        if exc.details is not None:
            warn("  details: " + json.dumps(exc.details, indent=2, default=str))


# -- files and values -------------------------------------------------------------------------


def load_document(path: str, what: str = "file") -> Any:
    """A JSON or YAML document (``-`` reads stdin): by extension, else JSON first."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}")
    try:
        if path.endswith((".yaml", ".yml")):
            return yaml.safe_load(text)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        fail(f"{path} is neither JSON nor YAML: {str(exc).splitlines()[0]}")


def parse_assignments(values: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (``--set parallel_limit=10``); the value read as YAML (a number,
    true, a list…), a dotted key setting a nested field."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def elapsed(start: Any, end: Any = None, now: datetime | None = None) -> str:
    """``1m05s`` between two API times (the end: now when not given); empty if not started."""
    begin = parse_time(start)
    if begin is None:
        return ""
    finish = parse_time(end) or now or datetime.now(UTC)
    seconds = max(0, int((finish - begin).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
