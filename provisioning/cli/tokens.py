"""``provisioning tokens create|list|revoke``: API tokens for automation and AI assistants
(``/auth/tokens`` on the control center). A token is shown once, when it is created; use it
with ``provisioning login --token`` or ``PROVISIONING_TOKEN``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer

from provisioning.cli.admin import user_id_of
from provisioning.cli.commands import ALL, ID_ARGUMENT, LIMIT, YES_OPTION, listing
from provisioning.cli.common import Session, confirm, run, say, warn
from provisioning.cli.output import OUTPUT_OPTION, Column, Output, show_item

tokens_app = typer.Typer(
    help="API tokens (pvt_…) for automation: create (shown once), list, revoke.", no_args_is_help=True
)

SCOPES = typer.Option(
    None, "--scope", help="a resource:action it may use (repeatable); none: all your rights"
)
COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("USER", "username"),
    ("SCOPES", lambda t: "all" if t.get("scopes") is None else t["scopes"]),
    ("CREATED", "created_at"),
    ("EXPIRES", "expires_at"),
    ("LAST USED", "last_used_at"),
    ("USES", "uses"),
    ("ACTIVE", "active"),
]


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="what the token is for (letters, digits, spaces, . _ -)"),
    expires_in_days: int = typer.Option(30, "--expires-in-days", min=1, help="its lifetime in days"),
    scope: list[str] | None = SCOPES,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Create an API token for yourself and print it, once: it cannot be shown again.

    Needs a login session (not another API token), opened with your MFA code when your
    role requires MFA. The token stands for you, narrowed to its scopes.

    \b
    Examples:
      provisioning tokens create "ci pipeline" --expires-in-days 90 --scope batch:read --scope batch:execute
      provisioning tokens create assistant -o json | jq -r .token
    """
    body: dict[str, Any] = {"name": name, "expires_in_days": expires_in_days}
    if scope:
        body["scopes"] = scope
    created = run(ctx, lambda s: s.cc.call("POST", "/auth/tokens", body))
    warn("This token is shown once and cannot be shown again: store it now (a secret manager, a CI secret).")
    if output is not Output.table:
        show_item(created, output)
        return
    record = created.get("api_token") or {}
    scopes = ", ".join(record.get("scopes") or []) or "all of your rights"
    say(f"API token {record.get('name')!r} created (id {record.get('id')})")
    say(f"expires: {record.get('expires_at')}")
    say(f"scopes: {scopes}")
    say(f"token: {created.get('token')}")


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    everyone: bool = typer.Option(False, "--everyone", help="every user's tokens (admin; API: all=true)"),
    user: str = typer.Option(None, "--user", help="one user's tokens, by id or username (admin)"),
    active: bool = typer.Option(False, "--active", help="only tokens neither revoked nor expired"),
    limit: int = LIMIT,
    every: bool = ALL,
    output: Output = OUTPUT_OPTION,
) -> None:
    """API tokens, newest first: yours, or (admins) everyone's or one user's. Never the secrets.

    --all follows every page (as in every listing); --everyone is the API's all=true.

    \b
    Examples:
      provisioning tokens list --active
      provisioning tokens list --everyone --all -o json
      provisioning tokens list --user alice
    """
    params: dict[str, Any] = {"all": "true" if everyone else None, "active": "true" if active else None}
    if user:

        async def resolve(s: Session) -> str:
            return await user_id_of(s, user)

        params["user_id"] = run(ctx, resolve)
    listing(ctx, "cc", "/auth/tokens", params, COLUMNS, output, limit, every, "no API tokens")


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context, token_id: str = ID_ARGUMENT, yes: bool = YES_OPTION, output: Output = OUTPUT_OPTION
) -> None:
    """Revoke an API token (yours, or any as an admin; asks first): refused at once by both services.

    \b
    Example:
      provisioning tokens revoke k3x9q2ab --yes
    """
    confirm(f"Revoke API token {token_id}?", yes)
    revoked = run(ctx, lambda s: s.cc.call("DELETE", f"/auth/tokens/{quote(token_id, safe='')}"))
    if output is not Output.table:
        show_item(revoked, output)
        return
    say(f"API token {revoked.get('id')} ({revoked.get('name')!r}) revoked at {revoked.get('revoked_at')}")
