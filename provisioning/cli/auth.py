"""``login``, ``logout``, ``whoami`` and ``context list|use|delete``: sessions kept per context."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from typing import Any

import typer

from provisioning.cli.common import (
    Options,
    Session,
    fail,
    options,
    run,
    run_coroutine,
    say,
    target_of,
    warn,
)
from provisioning.cli.config import Credentials, parse_time
from provisioning.cli.output import OUTPUT_OPTION, Output, show_item, show_list
from provisioning.client import ApiError, Client

API_TOKEN_PREFIX = "pvt_"
SESSION_FIELDS = ("token", "expires_at", "refresh_token", "refresh_expires_at", "token_kind")

context_app = typer.Typer(
    help="Named contexts (a server and a session each), like kubectl's.", no_args_is_help=True
)


def _login_target(
    ctx: typer.Context, context: str | None, server: str | None, orchestrator: str | None
) -> None:
    """The login's own --context/--server/--orchestrator win over the root options."""
    opts: Options = options(ctx)
    opts.context = context or opts.context
    opts.server = server or opts.server
    opts.orchestrator = orchestrator or opts.orchestrator


def login(
    ctx: typer.Context,
    server: str = typer.Option(None, "--server", help="control center URL (default http://127.0.0.1:9080)"),
    orchestrator: str = typer.Option(
        None, "--orchestrator", help="orchestrator URL (default: the server's host, port 9090)"
    ),
    context: str = typer.Option(None, "--context", help="save the session under this context name"),
    username: str = typer.Option(None, "--username", "-u", envvar="PROVISIONING_USERNAME"),
    mfa_code: str = typer.Option(
        None, "--mfa-code", envvar="PROVISIONING_MFA_CODE", help="TOTP or backup code"
    ),
    token: str = typer.Option(
        None, "--token", help="store this API token for the context instead of logging in (no refresh)"
    ),
) -> None:
    """Log in and save the session (first login: enrol MFA in the terminal).

    The password comes from PROVISIONING_PASSWORD, else a prompt.

    \b
    Examples:
      provisioning login --server https://cc.example:9080 --username alice
      provisioning login --context prod --server https://prod-cc:9080
      provisioning login --token "$API_TOKEN"
    """
    _login_target(ctx, context, server, orchestrator)
    opts = options(ctx)
    opts.token = None  # a login makes its own token
    creds, target = target_of(ctx)
    name = target.context
    values: dict[str, Any] = {"server": target.server, "orchestrator": target.orchestrator}

    async def go() -> dict[str, Any]:
        async with Client(target.server, token) as cc:
            if token:
                me = await cc.call("GET", "/users/me")
                return {
                    "token": token,
                    "token_kind": "api",
                    "user": _summary(me),
                    "expires_at": _token_expiry({}, token) or await _api_token_expiry(cc, token),
                }
            return await _password_login(cc, target.server, username, mfa_code)

    data = run_coroutine(ctx, go)
    values.update({k: data[k] for k in SESSION_FIELDS if data.get(k) is not None})
    values["user"] = data.get("user")
    path = creds.put(name, values)
    user = (data.get("user") or {}).get("username", "?")
    say(f"logged in as {user} on {target.server} (context {name}); session saved to {path}")


async def _api_token_expiry(cc: Client, token: str) -> str | None:
    """An API token's expiry, from its own record (``pvt_<id>_…``); None when the token may
    not read the list (its scopes) or is not an API token."""
    token_id = token.removeprefix(API_TOKEN_PREFIX).split("_", 1)[0]
    if not token.startswith(API_TOKEN_PREFIX) or not token_id:
        return None
    try:
        page = await cc.collect("/auth/tokens", {"active": "true"}, every=True)
    except ApiError:
        return None
    found = next((t for t in page.items if isinstance(t, dict) and t.get("id") == token_id), None)
    return str(found["expires_at"]) if found and found.get("expires_at") else None


def _summary(me: dict[str, Any]) -> dict[str, Any]:
    return {k: me.get(k) for k in ("id", "username", "email", "roles")}


async def _password_login(
    cc: Client, server: str, username: str | None, mfa_code: str | None
) -> dict[str, Any]:
    username = username or typer.prompt("username")
    password = os.environ.get("PROVISIONING_PASSWORD") or typer.prompt("password", hide_input=True)
    body: dict[str, Any] = {"username": username, "password": password}
    if mfa_code:
        body["mfa_code"] = mfa_code
    try:
        data: dict[str, Any] = await cc.call("POST", "/auth/login", body)
    except ApiError as exc:
        if exc.code != "mfa_required" and not (
            isinstance(exc.details, dict) and exc.details.get("mfa_required")
        ):
            raise
        body["mfa_code"] = typer.prompt("MFA code").strip()
        data = await cc.call("POST", "/auth/login", body)
    if data.get("mfa_setup_required"):
        body["mfa_code"] = await _enrol_mfa(server, str(data["setup_token"]), password)
        data = await cc.call("POST", "/auth/login", body)
    data["token_kind"] = "session"
    return data


async def _enrol_mfa(server: str, setup_token: str, password: str) -> str:
    """Show the TOTP secret (a QR code and the text), confirm a first code, print the backup
    codes; return the next code to log in with. Each step asks for the password again (the
    server's rule: a token alone must not change the second factor)."""
    import segno

    async with Client(server, setup_token) as enrol:
        setup = await enrol.call("POST", "/auth/mfa/setup", {"password": password})
        say("This account must use MFA. Scan this code with an authenticator app")
        segno.make(setup["otpauth_uri"], error="m").terminal(compact=True)
        say(f"or enter the secret by hand: {setup['secret']}")
        code = typer.prompt("Code shown by the app").strip()
        enabled = await enrol.call("POST", "/auth/mfa/enable", {"password": password, "code": code})
    say("MFA enabled. Keep these single-use backup codes somewhere safe:")
    for backup in enabled["backup_codes"]:
        say(f"  {backup}")
    # The code just used is spent (a TOTP code is accepted once): wait for the next one.
    return str(typer.prompt("Next code shown by the app (to log in)").strip())


def logout(ctx: typer.Context) -> None:
    """Revoke the session on the server and delete it from the credentials file.

    \b
    Example:
      provisioning logout
      provisioning --context prod logout
    """
    creds, target = target_of(ctx)
    if not target.values.get("token"):
        fail(f"context {target.context!r} holds no session", 1)

    async def go() -> str:
        async with Session(options(ctx), creds, target) as s:
            try:
                await s.cc.call("POST", "/auth/logout")
            except ApiError as exc:
                if exc.status != 401:
                    raise
                return "the session had already ended on the server"
            return "session revoked on the server"

    def forget() -> None:
        values = {k: v for k, v in target.values.items() if k not in (*SESSION_FIELDS, "user")}
        # A refresh during the call may have rotated the tokens: drop whatever is stored now.
        Credentials(creds.path).put(target.context, values, make_current=False)

    try:
        outcome = run_coroutine(ctx, go)
    except typer.Exit:
        forget()
        warn(f"the session was not revoked on the server; deleted locally (context {target.context})")
        raise
    forget()
    say(f"logged out of {target.server} (context {target.context}): {outcome}; deleted locally")


def _token_expiry(target_values: dict[str, Any], token: str | None) -> str | None:
    stored = target_values.get("expires_at")
    if stored and target_values.get("token") == token:
        return str(stored)
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, KeyError, TypeError):
        return None


def _token_kind(s: Session) -> str:
    """``session`` (a login's, refreshed), ``api`` (an API token) or ``token`` (another bearer)."""
    if s.target.values.get("token") == s.cc.token:
        return str(s.target.values.get("token_kind", "session"))
    return "api" if (s.cc.token or "").startswith(API_TOKEN_PREFIX) else "token"


def whoami(ctx: typer.Context, output: Output = OUTPUT_OPTION) -> None:
    """Who the current session is: user, roles, MFA, server and token expiry.

    \b
    Example:
      provisioning whoami
      provisioning whoami -o json
    """

    async def go(s: Session) -> dict[str, Any]:
        me: dict[str, Any] = await s.cc.call("GET", "/users/me")
        return {
            "username": me.get("username"),
            "id": me.get("id"),
            "email": me.get("email"),
            "roles": me.get("roles"),
            "mfa_enabled": me.get("mfa_enabled"),
            "context": s.target.context,
            "server": s.target.server,
            "orchestrator": s.target.orchestrator,
            "token_kind": _token_kind(s),
            "token_expires_at": _token_expiry(s.target.values, s.cc.token),
            "refresh_expires_at": s.target.values.get("refresh_expires_at") if s.target.refreshable else None,
        }

    _, target = target_of(ctx)
    if not target.token:
        fail(f"not logged in (context {target.context}); run 'provisioning login'", 1)
    show_item(run(ctx, go), output)


# -- contexts -----------------------------------------------------------------------------------


def _context_rows(creds: Credentials) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for name, values in sorted(creds.contexts.items()):
        refresh = parse_time(values.get("refresh_expires_at")) or parse_time(values.get("expires_at"))
        if not values.get("token"):
            state = "logged out"
        elif refresh is not None and refresh < now:
            state = "expired"
        else:
            state = "active"
        rows.append(
            {
                "name": name,
                "current": name == creds.current,
                "server": values.get("server"),
                "orchestrator": values.get("orchestrator"),
                "user": (values.get("user") or {}).get("username"),
                "session": state,
                "token_kind": values.get("token_kind") if values.get("token") else None,
            }
        )
    return rows


@context_app.command("list")
def context_list(ctx: typer.Context, output: Output = OUTPUT_OPTION) -> None:
    """The saved contexts (never their tokens); * marks the current one.

    \b
    Example:
      provisioning context list
    """
    creds, _ = target_of(ctx)
    show_list(
        _context_rows(creds),
        [
            ("", lambda r: "*" if r["current"] else ""),
            ("NAME", "name"),
            ("SERVER", "server"),
            ("ORCHESTRATOR", "orchestrator"),
            ("USER", "user"),
            ("SESSION", "session"),
        ],
        output,
        empty="no contexts yet: run 'provisioning login'",
    )


@context_app.command("use")
def context_use(
    ctx: typer.Context, name: str = typer.Argument(..., help="the context to make current")
) -> None:
    """Make a context the current one.

    \b
    Example:
      provisioning context use prod
    """
    creds, _ = target_of(ctx)
    if name not in creds.contexts:
        fail(f"no context named {name!r} (contexts: {', '.join(sorted(creds.contexts)) or 'none'})", 1)
    creds.doc["current_context"] = name
    creds.save()
    say(f"current context: {name} ({creds.contexts[name].get('server')})")


@context_app.command("delete")
def context_delete(ctx: typer.Context, name: str = typer.Argument(..., help="the context to forget")) -> None:
    """Forget a context and its session locally (``logout`` first to revoke it on the server).

    \b
    Example:
      provisioning context delete staging
    """
    creds, _ = target_of(ctx)
    if not creds.delete(name):
        fail(f"no context named {name!r}", 1)
    say(f"context {name} deleted" + (f"; current context: {creds.current}" if creds.current else ""))
