"""The administrator's chores and the read-only views: ``users``, ``policies``, ``audit``,
``webhooks`` (control center) and ``tasks`` (orchestrator)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import typer

from provisioning.cli.commands import ALL, LIMIT, YES_OPTION, delete_command, item_command, listing
from provisioning.cli.common import EXIT_FAILED, Session, confirm, fail, load_document, run, say
from provisioning.cli.output import OUTPUT_OPTION, Output, show_item, show_list
from provisioning.client import ApiError

users_app = typer.Typer(help="Users and their roles (admin).", no_args_is_help=True)
policies_app = typer.Typer(help="Authorization policies (admin).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: tail, verify the hash chain, export.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhook subscriptions and their deliveries.", no_args_is_help=True)
tasks_app = typer.Typer(help="Tasks (one per operation of every batch).", no_args_is_help=True)


AUDIT_POLL_S = 2.0


# -- users ------------------------------------------------------------------------------------------

NEW_ROLES = typer.Option(None, "--role", help="a role (repeatable): admin, operator, viewer, …")
CHANGED_ROLES = typer.Option(None, "--role", help="the new roles (repeatable; replaces them all)")
USER_COLUMNS = [
    ("ID", "id"),
    ("USERNAME", "username"),
    ("EMAIL", "email"),
    ("ROLES", "roles"),
    ("ENABLED", "enabled"),
    ("MFA", "mfa_enabled"),
    ("LAST LOGIN", "last_login"),
]


async def user_id_of(s: Session, ref: str) -> str:
    """A user id from an id or a username."""
    try:
        return str((await s.cc.call("GET", f"/users/{ref}"))["id"])
    except ApiError as exc:
        if exc.status != 404:
            raise
    users = (await s.cc.collect("/users", every=True)).items
    for user in users:
        if user.get("username") == ref:
            return str(user["id"])
    raise ApiError(404, f"no user with id or username {ref!r}")


def _new_password(prompt: str) -> str:
    password = os.environ.get("PROVISIONING_NEW_PASSWORD")
    return password or str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    role: str = typer.Option(None, "--role", help="only users with this role"),
    enabled: bool = typer.Option(None, "--enabled/--disabled", help="only enabled (or disabled) users"),
    limit: int = LIMIT,
    every: bool = ALL,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Users.

    \b
    Example:
      provisioning users list --role operator
    """
    params = {"role": role, "enabled": None if enabled is None else str(enabled).lower()}
    listing(ctx, "cc", "/users", params, USER_COLUMNS, output, limit, every, "no users")


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    email: str = typer.Option(..., "--email"),
    role: list[str] | None = NEW_ROLES,
    disabled: bool = typer.Option(False, "--disabled", help="create it disabled"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Create a user; the password from PROVISIONING_NEW_PASSWORD, else a prompt.

    \b
    Example:
      provisioning users create alice --email alice@example.com --role operator
    """
    body = {"username": username, "email": email, "roles": role or [], "enabled": not disabled}
    body["password"] = _new_password("password for the new user")
    show_item(run(ctx, lambda s: s.cc.call("POST", "/users", body)), output)


@users_app.command("update")
def users_update(
    ctx: typer.Context,
    user: str = typer.Argument(..., help="user id or username"),
    email: str = typer.Option(None, "--email"),
    role: list[str] | None = CHANGED_ROLES,
    enabled: bool = typer.Option(None, "--enable/--disable"),
    password: bool = typer.Option(False, "--password", help="set a new password (prompted)"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Change a user's email, roles, state or password.

    \b
    Example:
      provisioning users update alice --role viewer --disable
    """
    body: dict[str, Any] = {"email": email, "roles": role or None, "enabled": enabled}
    if password:
        body["password"] = _new_password("new password")
    body = {k: v for k, v in body.items() if v is not None}
    if not body:
        fail("nothing to change: give --email, --role, --enable/--disable or --password")

    async def go(s: Session) -> Any:
        user_id = await user_id_of(s, user)
        await s.cc.call("PUT", f"/users/{user_id}", body)
        return await s.cc.call("GET", f"/users/{user_id}")

    show_item(run(ctx, go), output)


@users_app.command("delete")
def users_delete(
    ctx: typer.Context, user: str = typer.Argument(..., help="user id or username"), yes: bool = YES_OPTION
) -> None:
    """Delete a user (asks first).

    \b
    Example:
      provisioning users delete alice --yes
    """
    confirm(f"Delete user {user}?", yes)

    async def go(s: Session) -> Any:
        return await s.cc.call("DELETE", f"/users/{await user_id_of(s, user)}")

    say(str(run(ctx, go)))


@users_app.command("reset-mfa")
def users_reset_mfa(ctx: typer.Context, user: str = typer.Argument(..., help="user id or username")) -> None:
    """Clear a user's MFA (they enrol again at their next login).

    \b
    Example:
      provisioning users reset-mfa alice
    """

    async def go(s: Session) -> Any:
        return await s.cc.call("POST", f"/users/{await user_id_of(s, user)}/mfa/reset")

    say(str(run(ctx, go)))


# -- policies -----------------------------------------------------------------------------------

POLICY_COLUMNS = [
    ("ID", "id"),
    ("NAME", "name"),
    ("VERSION", "version"),
    ("REVISION", "revision"),
    ("ENABLED", "enabled"),
    ("RULES", lambda p: len(p.get("rules") or [])),
    ("UPDATED", "updated_at"),
]


@policies_app.command("list")
def policies_list(
    ctx: typer.Context, limit: int = LIMIT, every: bool = ALL, output: Output = OUTPUT_OPTION
) -> None:
    """Policies.

    \b
    Example:
      provisioning policies list -o yaml
    """
    listing(ctx, "cc", "/policies", {}, POLICY_COLUMNS, output, limit, every, "no policies")


@policies_app.command("show")
def policies_show(
    ctx: typer.Context, policy_id: str = typer.Argument(..., metavar="ID"), output: Output = OUTPUT_OPTION
) -> None:
    """One policy with its rules.

    \b
    Example:
      provisioning policies show 3a1b…
    """
    policy = run(ctx, lambda s: s.cc.call("GET", f"/policies/{policy_id}"))
    if output is not Output.table:
        show_item(policy, output)
        return
    show_item(policy, output, fields=[k for k in policy if k != "rules"])
    say("")
    show_list(
        policy.get("rules") or [],
        [
            ("EFFECT", "effect"),
            ("RESOURCE", "resource"),
            ("ACTIONS", "action"),
            ("ROLES", "roles"),
            ("CONDITION", "condition"),
        ],
        Output.table,
        empty="no rules",
    )


@policies_app.command("apply")
def policies_apply(
    ctx: typer.Context,
    file: str = typer.Argument(..., help="a policy in JSON or YAML"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Create a policy, or update the one with the file's id (or, else, its name).

    \b
    Example:
      provisioning policies apply policies/ops-night-freeze.yaml
    """
    doc = load_document(file, "policy file")
    if not isinstance(doc, dict):
        fail(f"{file}: a policy file holds one object with name, version and rules")
    body = {k: v for k, v in doc.items() if k in ("name", "version", "description", "rules", "enabled")}

    async def go(s: Session) -> tuple[str, Any]:
        policy_id = doc.get("id")
        if not policy_id:
            existing = (await s.cc.collect("/policies", every=True)).items
            policy_id = next((p["id"] for p in existing if p.get("name") == doc.get("name")), None)
        outcome = "updated"
        if policy_id:
            await s.cc.call("PUT", f"/policies/{policy_id}", body)
        else:
            outcome, policy_id = "created", (await s.cc.call("POST", "/policies", body))["id"]
        return outcome, await s.cc.call("GET", f"/policies/{policy_id}")

    outcome, policy = run(ctx, go)
    if output is Output.table:
        say(
            f"policy {policy.get('name')} {outcome} "
            f"(id {policy.get('id')}, revision {policy.get('revision')})"
        )
    else:
        show_item(policy, output)


delete_command(
    policies_app,
    """Delete a policy (asks first).

    \b
    Example:
      provisioning policies delete 3a1b… --yes
    """,
    "cc",
    "/policies/{id}",
    "policy",
)


@policies_app.command("versions")
def policies_versions(
    ctx: typer.Context, policy_id: str = typer.Argument(..., metavar="ID"), output: Output = OUTPUT_OPTION
) -> None:
    """A policy's previous versions.

    \b
    Example:
      provisioning policies versions 3a1b…
    """
    items = run(ctx, lambda s: s.cc.call("GET", f"/policies/{policy_id}/versions"))
    show_list(
        items,
        [
            ("VERSION ID", "version_id"),
            ("VERSION", "version"),
            ("REVISION", "revision"),
            ("UPDATED", "updated_at"),
            ("BY", "updated_by"),
        ],
        output,
        empty="no previous versions",
    )


# -- audit -----------------------------------------------------------------------------------------

AUDIT_COLUMNS = [
    ("TIME", "timestamp"),
    ("USER", "username"),
    ("ACTION", "action"),
    ("RESOURCE", "resource"),
    ("RESULT", "result"),
    ("IP", "ip"),
]


def _audit_filters(
    user: str | None,
    action: str | None,
    resource: str | None,
    result: str | None,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    return {
        "user_id": user,
        "action": action,
        "resource": resource,
        "result": result,
        "from": since,
        "to": until,
    }


USER_F = typer.Option(None, "--user", help="a user id")
ACTION_F = typer.Option(None, "--action", help="an action; a trailing * matches a prefix")
RESOURCE_F = typer.Option(None, "--resource", help="a resource; a trailing * matches a prefix")
RESULT_F = typer.Option(None, "--result", help="success, denied, failure, …")
FROM_F = typer.Option(None, "--from", help="from this time (ISO 8601)")
TO_F = typer.Option(None, "--to", help="up to this time (ISO 8601)")


@audit_app.command("tail")
def audit_tail(
    ctx: typer.Context,
    user: str = USER_F,
    action: str = ACTION_F,
    resource: str = RESOURCE_F,
    result: str = RESULT_F,
    since: str = FROM_F,
    until: str = TO_F,
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="how many of the latest records"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new records (Ctrl-C stops)"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """The latest audit records, oldest first; --follow keeps printing new ones.

    \b
    Examples:
      provisioning audit tail --action 'auth.*' --limit 50
      provisioning audit tail --follow --result denied
    """
    params = _audit_filters(user, action, resource, result, since, until)

    async def go(s: Session) -> None:
        page = await s.cc.page("/audit/logs", {**params, "limit": limit})
        records = list(reversed(page.items))
        if not follow:
            show_list(records, AUDIT_COLUMNS, output, total=page.total, empty="no audit records")
            return
        seen = {r["id"] for r in records}
        for r in records:
            _audit_line(r, output)
        last = records[-1]["timestamp"] if records else since
        while True:
            await asyncio.sleep(AUDIT_POLL_S)
            newer = await s.cc.page("/audit/logs", {**params, "from": last, "limit": 1000})
            for r in reversed(newer.items):
                if r["id"] not in seen:
                    seen.add(r["id"])
                    last = r["timestamp"]
                    _audit_line(r, output)

    try:
        run(ctx, go)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _audit_line(record: dict[str, Any], output: Output) -> None:
    if output is Output.table:
        say(
            f"{record.get('timestamp')}  {record.get('username') or '-':<14} {record.get('action'):<24} "
            f"{record.get('resource') or '':<16} {record.get('result')}"
        )
    else:
        import json

        say(json.dumps(record, separators=(",", ":")))


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, output: Output = OUTPUT_OPTION) -> None:
    """Walk the audit log's hash chain; exit 1 if it is broken.

    \b
    Example:
      provisioning audit verify
    """
    outcome = run(ctx, lambda s: s.cc.call("GET", "/audit/verify"))
    if output is Output.table:
        if outcome.get("valid"):
            say(f"the audit chain is intact: {outcome.get('records')} records")
        else:
            say(f"the audit chain is BROKEN at {outcome.get('broken_at')}: {outcome}")
    else:
        show_item(outcome, output)
    if not outcome.get("valid"):
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    fmt: str = typer.Option("ndjson", "--format", help="ndjson or csv"),
    user: str = USER_F,
    action: str = ACTION_F,
    resource: str = RESOURCE_F,
    result: str = RESULT_F,
    since: str = FROM_F,
    until: str = TO_F,
) -> None:
    """Every matching audit record to stdout, as NDJSON or CSV.

    \b
    Example:
      provisioning audit export --format csv --from 2026-11-01T00:00:00Z > audit.csv
    """
    if fmt not in ("ndjson", "csv"):
        raise typer.BadParameter("--format is ndjson or csv")
    params = {**_audit_filters(user, action, resource, result, since, until), "format": fmt}

    async def go(s: Session) -> None:
        async for line in s.cc.lines("/audit/logs", params):
            sys.stdout.buffer.write(line)
        sys.stdout.flush()

    run(ctx, go)


# -- webhooks -----------------------------------------------------------------------------------

EVENTS_OPTION = typer.Option(..., "--event", help="an event name or pattern (repeatable), e.g. task.*")
WEBHOOK_COLUMNS = [
    ("ID", "id"),
    ("URL", "url"),
    ("EVENTS", "events"),
    ("ENABLED", "enabled"),
    ("FAILURES", "consecutive_failures"),
    ("LAST SUCCESS", "last_success_at"),
]


@webhooks_app.command("list")
def webhooks_list(
    ctx: typer.Context, limit: int = LIMIT, every: bool = ALL, output: Output = OUTPUT_OPTION
) -> None:
    """Webhook subscriptions.

    \b
    Example:
      provisioning webhooks list
    """
    listing(ctx, "cc", "/webhooks", {}, WEBHOOK_COLUMNS, output, limit, every, "no webhooks")


item_command(
    webhooks_app,
    "show",
    """One webhook subscription.

    \b
    Example:
      provisioning webhooks show 7d2e…
    """,
    "cc",
    "GET",
    "/webhooks/{id}",
)


def _show_secret(hook: dict[str, Any], output: Output) -> None:
    if output is not Output.table:
        show_item(hook, output)
        return
    say(f"webhook {hook.get('id')} -> {hook.get('url')} ({', '.join(hook.get('events') or [])})")
    if hook.get("secret"):
        say(f"signing secret (shown once, keep it safe): {hook['secret']}")


@webhooks_app.command("create")
def webhooks_create(
    ctx: typer.Context,
    url: str = typer.Option(..., "--url", help="the HTTPS endpoint to call"),
    event: list[str] = EVENTS_OPTION,
    description: str = typer.Option(None, "--description"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Subscribe an endpoint to events; prints the signing secret once.

    \b
    Example:
      provisioning webhooks create --url https://ci.example/hook --event 'batch.*'
    """
    body = {"url": url, "events": event, "description": description}
    hook = run(
        ctx, lambda s: s.cc.call("POST", "/webhooks", {k: v for k, v in body.items() if v is not None})
    )
    _show_secret(hook, output)


delete_command(
    webhooks_app,
    """Delete a webhook subscription (asks first).

    \b
    Example:
      provisioning webhooks delete 7d2e… --yes
    """,
    "cc",
    "/webhooks/{id}",
    "webhook",
)
item_command(
    webhooks_app,
    "rotate",
    """A new signing secret (the old one still verifies for a grace period).

    \b
    Example:
      provisioning webhooks rotate 7d2e…
    """,
    "cc",
    "POST",
    "/webhooks/{id}/rotate-secret",
    _show_secret,
)
item_command(
    webhooks_app,
    "test",
    """Send a test event to the endpoint (queued; see 'webhooks deliveries').

    \b
    Example:
      provisioning webhooks test 7d2e…
    """,
    "cc",
    "POST",
    "/webhooks/{id}/test",
)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    ctx: typer.Context,
    webhook_id: str = typer.Argument(..., metavar="ID"),
    status: str = typer.Option(None, "--status", help="pending, delivered or failed"),
    limit: int = LIMIT,
    every: bool = ALL,
    output: Output = OUTPUT_OPTION,
) -> None:
    """A webhook's deliveries, newest first.

    \b
    Example:
      provisioning webhooks deliveries 7d2e… --status failed
    """
    columns = [
        ("DELIVERY", "id"),
        ("EVENT", "event"),
        ("STATUS", "status"),
        ("ATTEMPTS", "attempt"),
        ("HTTP", "status_code"),
        ("CREATED", "created_at"),
        ("ERROR", "error"),
    ]
    listing(
        ctx,
        "cc",
        f"/webhooks/{webhook_id}/deliveries",
        {"status": status},
        columns,
        output,
        limit,
        every,
        "no deliveries",
    )


@webhooks_app.command("redeliver")
def webhooks_redeliver(
    ctx: typer.Context,
    webhook_id: str = typer.Argument(..., metavar="ID"),
    delivery_id: str = typer.Argument(..., metavar="DELIVERY"),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Send a delivery again (a new delivery, same payload).

    \b
    Example:
      provisioning webhooks redeliver 7d2e… 91ab…
    """
    path = f"/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
    show_item(run(ctx, lambda s: s.cc.call("POST", path)), output)


# -- tasks -------------------------------------------------------------------------------------------


@tasks_app.command("list")
def tasks_list(
    ctx: typer.Context,
    status: str = typer.Option(
        None, "--status", help="Pending, Running, Completed, Failed, Cancelled, RolledBack…"
    ),
    batch: str = typer.Option(None, "--batch", help="only this batch's tasks"),
    limit: int = LIMIT,
    every: bool = ALL,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Tasks, newest first.

    \b
    Example:
      provisioning tasks list --status Failed
    """
    columns = [
        ("ID", "id"),
        ("NAME", "name"),
        ("STATUS", "status"),
        ("ATTEMPT", "attempt"),
        ("BATCH", "workflow_id"),
        ("COMPLETED", "completed_at"),
    ]
    listing(
        ctx,
        "orch",
        "/tasks",
        {"status": status, "workflow_id": batch},
        columns,
        output,
        limit,
        every,
        "no tasks",
    )


item_command(
    tasks_app,
    "show",
    """One task, with its output and error.

    \b
    Example:
      provisioning tasks show 0b7a…
    """,
    "orch",
    "GET",
    "/tasks/{id}",
)
