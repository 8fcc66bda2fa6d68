"""``provisioning``: start the product, submit and watch batches, roll back, log in."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from provisioning.client import ApiError, Client, refresh_saved_token, save_token, saved_token
from shared.errors import ProvisioningError
from shared.settings import Settings, SettingsError, load_settings

FINAL = {"Completed", "Failed", "Cancelled"}
WATCH_INTERVAL_S = 0.5


def _local_url(host: str, port: int) -> str:
    """The URL of a service of this host: a wildcard bind address is reached on loopback."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _orchestrator_url(args: argparse.Namespace, settings: Settings) -> str:
    """``--url``, else ``PROVISIONING_URL`` (the client's own variable, not a service
    setting), else the orchestrator of these settings."""
    if args.url:
        return str(args.url)
    return os.environ.get("PROVISIONING_URL") or _local_url(settings.host, settings.orchestrator_port)


def _control_center_url(args: argparse.Namespace, settings: Settings) -> str:
    if getattr(args, "control_center", None):
        return str(args.control_center)
    return settings.control_center_url or _local_url(settings.host, settings.control_center_port)


def _settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def load_batch_file(path: str) -> dict[str, Any]:
    """A batch in JSON or YAML (by extension, else by trying JSON first)."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        doc = yaml.safe_load(text)
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise SystemExit(f"{path}: a batch file holds one object with name and operations")
    return doc


def _bar(pct: float, width: int = 24) -> str:
    filled = round(width * pct / 100)
    return "[" + "#" * filled + "." * (width - filled) + f"] {pct:5.1f}%"


async def watch(client: Client, batch_id: str, out: Any = None) -> str:
    """Print each operation's status changes and a progress bar until the batch ends."""
    out = out if out is not None else sys.stdout  # the stdout of now, not of import time
    seen: dict[str, tuple[str, float]] = {}
    while True:
        batch = await client.call("GET", f"/batch/operations/{batch_id}")
        for op in batch["operations"]:
            key = (op["status"], round(float(op["progress"]), 0))
            if seen.get(op["id"]) != key:
                seen[op["id"]] = key
                extra = f"  {op['error']}" if op.get("error") and op["status"] != "Running" else ""
                print(
                    f"  {op['id']:<32} {op['status']:<12} {_bar(float(op['progress']))}{extra}",
                    file=out,
                    flush=True,
                )
        if batch["status"] in FINAL:
            print(
                f"batch {batch_id}: {batch['status']} {_bar(float(batch['progress']))}", file=out, flush=True
            )
            if batch.get("rollback"):
                print(f"rollback: {json.dumps(batch['rollback'])}", file=out, flush=True)
            return str(batch["status"])
        await asyncio.sleep(WATCH_INTERVAL_S)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


async def _client_command(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or _settings_of(args)
    token = saved_token()
    if args.command == "login":
        return await _login(args, settings=settings)
    refresher = None
    if token and not os.environ.get("PROVISIONING_TOKEN"):
        cc_url = _control_center_url(args, settings)

        async def refresher() -> str | None:
            return await refresh_saved_token(cc_url)

    async with Client(_orchestrator_url(args, settings), token, refresher) as client:
        if args.command == "batch":
            if args.batch_command == "submit":
                body = load_batch_file(args.file)
                if args.check:
                    body["check_mode"] = True
                data = await client.call("POST", "/batch/execute", body)
                if body.get("check_mode"):
                    _print(data)
                    return 0
                print(f"batch {data['batch_id']} submitted ({len(data['operations'])} operations)")
                if args.watch:
                    status = await watch(client, data["batch_id"])
                    return 0 if status == "Completed" else 1
                return 0
            if args.batch_command == "list":
                rows = await client.call("GET", "/batch/operations", params={"limit": args.limit})
                for b in rows:
                    print(
                        f"{b['batch_id']}  {b['status']:<10} {b['progress']:6.1f}%  "
                        f"{len(b['operations']):4d} ops  {b['name']}"
                    )
                return 0
            if args.batch_command == "status":
                _print(await client.call("GET", f"/batch/operations/{args.id}"))
                return 0
            if args.batch_command == "watch":
                return 0 if await watch(client, args.id) == "Completed" else 1
            if args.batch_command == "cancel":
                print(await client.call("POST", f"/batch/operations/{args.id}/cancel"))
                return 0
        if args.command == "tasks":
            params: dict[str, Any] = {"limit": args.limit}
            if args.status:
                params["status"] = args.status
            for t in await client.call("GET", "/tasks", params=params):
                print(f"{t['id']}  {t['status']:<11} {t['name']}")
            return 0
        if args.command == "rollback":
            sub = args.rollback_command
            if sub == "checkpoint":
                cid = await client.call(
                    "POST", "/rollback/checkpoints", {"name": args.name, "description": args.description}
                )
                print(cid)
            elif sub == "checkpoints":
                for c in await client.call("GET", "/rollback/checkpoints"):
                    print(f"{c['id']}  {c['created_at']}  {c['name']}")
            elif sub == "execute":
                body = (
                    {"checkpoint_id": args.checkpoint}
                    if args.checkpoint
                    else {"operation_ids": args.operations, "workflow_id": args.workflow}
                )
                _print(await client.call("POST", "/rollback/execute", body))
            elif sub == "restore":
                print(await client.call("POST", f"/rollback/restore/{args.id}"))
            elif sub == "stats":
                _print(await client.call("GET", "/rollback/statistics"))
            return 0
    return 2


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    username = args.username or input("username: ")
    password = os.environ.get("PROVISIONING_PASSWORD") or getpass.getpass("password: ")
    return username, password


async def _login(args: argparse.Namespace, ask: Any = input, settings: Settings | None = None) -> int:
    """Log in, enrolling MFA in the terminal when the account must and has not yet."""
    cc_url = _control_center_url(args, settings or _settings_of(args))
    username, password = await asyncio.to_thread(_credentials, args)
    body: dict[str, Any] = {"username": username, "password": password}
    if args.mfa_code:
        body["mfa_code"] = args.mfa_code
    async with Client(cc_url) as client:
        try:
            data = await client.call("POST", "/auth/login", body)
        except ApiError as exc:
            if not (isinstance(exc.details, dict) and exc.details.get("mfa_required")):
                raise
            body["mfa_code"] = (await asyncio.to_thread(ask, "MFA code: ")).strip()
            data = await client.call("POST", "/auth/login", body)
        if data.get("mfa_setup_required"):
            code = await _enrol_mfa(cc_url, data["setup_token"], password, ask)
            if code is None:
                return 1
            body["mfa_code"] = code
            data = await client.call("POST", "/auth/login", body)
    path = save_token(data)
    print(f"logged in as {data['user']['username']}; token saved to {path}")
    return 0


async def _enrol_mfa(cc_url: str, setup_token: str, password: str, ask: Any) -> str | None:
    """Show the TOTP secret as a QR code, confirm a code, print the backup codes.
    Returns a fresh code to log in with. The server wants the password again with
    each enrolment step (a token alone must not be enough to change the second factor)."""
    import segno

    async with Client(cc_url, setup_token) as enrol:
        setup = await enrol.call("POST", "/auth/mfa/setup", {"password": password})
        print("This account must use MFA. Scan this code with an authenticator app")
        segno.make(setup["otpauth_uri"], error="m").terminal(compact=True)
        print(f"or enter the secret by hand: {setup['secret']}")
        code = (await asyncio.to_thread(ask, "Code shown by the app: ")).strip()
        enabled = await enrol.call("POST", "/auth/mfa/enable", {"password": password, "code": code})
    print("MFA enabled. Keep these single-use backup codes somewhere safe:")
    for backup in enabled["backup_codes"]:
        print(f"  {backup}")
    # The code just used is spent (a TOTP code is accepted once): wait for the next one.
    nxt = (await asyncio.to_thread(ask, "Next code shown by the app (to log in): ")).strip()
    return nxt or None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="provisioning", description=__doc__)
    p.add_argument("--url", help="orchestrator URL (PROVISIONING_URL, default: host and orchestrator_port)")
    p.add_argument("--config", help="TOML settings file (PROVISIONING_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start orchestrator and control center on one embedded store")
    sub.add_parser("orchestrator", help="start the orchestrator alone")
    sub.add_parser("control-center", help="start the control center alone")
    doctor = sub.add_parser(
        "doctor",
        help="check the host and the data (runner user, work root, permissions, store); --repair fixes",
    )
    doctor.add_argument(
        "--fix",
        "--repair",
        dest="fix",
        action="store_true",
        help="repair what can be repaired: runner user, work root, permissions, NUL in the store (as root)",
    )

    login = sub.add_parser("login", help="log in to the control center and save the token")
    login.add_argument("--username")
    login.add_argument("--mfa-code")
    login.add_argument(
        "--control-center", help="control center URL (control_center_url; default: host, control_center_port)"
    )

    batch = sub.add_parser("batch", help="submit, list, watch and cancel batches")
    bsub = batch.add_subparsers(dest="batch_command", required=True)
    submit = bsub.add_parser("submit", help="submit a batch file (JSON or YAML)")
    submit.add_argument("file")
    submit.add_argument("--watch", action="store_true", help="follow progress until it ends")
    submit.add_argument("--check", action="store_true", help="plan only (check mode)")
    lst = bsub.add_parser("list")
    lst.add_argument("--limit", type=int, default=20)
    for name in ("status", "watch", "cancel"):
        bsub.add_parser(name).add_argument("id")

    tasks = sub.add_parser("tasks", help="list tasks")
    tasks.add_argument("--status")
    tasks.add_argument("--limit", type=int, default=50)

    rb = sub.add_parser("rollback", help="checkpoints, rollback and restore")
    rsub = rb.add_subparsers(dest="rollback_command", required=True)
    cp = rsub.add_parser("checkpoint", help="create a checkpoint")
    cp.add_argument("name")
    cp.add_argument("--description")
    rsub.add_parser("checkpoints", help="list checkpoints")
    ex = rsub.add_parser("execute", help="roll back to a checkpoint or given operations")
    grp = ex.add_mutually_exclusive_group(required=True)
    grp.add_argument("--checkpoint")
    grp.add_argument("--operations", nargs="+")
    ex.add_argument("--workflow", help="batch id when --operations are operation names")
    rsub.add_parser("restore", help="reset recorded state to a checkpoint").add_argument("id")
    rsub.add_parser("stats", help="rollback statistics")

    keys = sub.add_parser("keys", help="rotate keys (on a stopped service's data directory)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = ksub.add_parser(
        "rotate",
        help="a new JWT signing key (the old one verifies until its tokens expire); "
        "--kek: seal every secret under a new key-encryption key",
    )
    rotate.add_argument("--kek", action="store_true", help="rotate the key-encryption key instead")
    return p


def _keys_command(args: argparse.Namespace, settings: Settings) -> int:
    from provisioning.keys import rotate_kek, rotate_signing_key

    rotate = rotate_kek if args.kek else rotate_signing_key
    for line in asyncio.run(rotate(settings)):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Every command reads the same settings (the client its URLs); bad ones stop it here.
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"provisioning: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "doctor":
        from provisioning import doctor

        return doctor.main(settings, args.fix)
    if args.command == "keys":
        try:
            return _keys_command(args, settings)
        except ProvisioningError as exc:
            print(f"provisioning: {exc.message}", file=sys.stderr)
            return 2
    if args.command in ("up", "orchestrator", "control-center"):
        from provisioning.server import run

        which = {
            "up": ("orchestrator", "control_center"),
            "orchestrator": ("orchestrator",),
            "control-center": ("control_center",),
        }[args.command]
        try:
            run(settings, which)
        except ProvisioningError as exc:
            print(f"provisioning: {exc.message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 0
        return 0
    try:
        return asyncio.run(_client_command(args, settings))
    except ApiError as exc:
        print(f"error ({exc.status}): {exc.message}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"provisioning: cannot reach the service: {exc}", file=sys.stderr)
        return 1
