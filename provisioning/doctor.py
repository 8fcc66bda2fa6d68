"""``provisioning doctor [--fix]``: check what the product needs from its host, and
with ``--fix`` repair what can be repaired safely.

A check is a function ``(settings, fix) -> list[Finding]``; :data:`CHECKS` lists
them in the order they run, so a new check is one more entry and the command does
not change. Run the doctor as the user the service runs as (root for a system
service): what it finds depends on that identity.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from orchestrator.command_runner import (
    Identity,
    RunnerUnavailable,
    ensure_work_root,
    runner_identity,
    usable_by,
    work_root,
)
from provisioning.repair import repair_store, scan_store
from shared.errors import StoreLocked
from shared.settings import Settings
from shared.store.fsperms import Finding, check_data_dir
from shared.web.app import open_store

# What `useradd` makes of the runner: a system account with its own group, no home
# and no login shell; it exists only to own the processes of command operations.
USERADD = ("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent")
NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_LOCKED_EXIT = 10  # useradd: cannot lock /etc/passwd (another useradd runs)
_LOCK_RETRIES = 20


Check = Callable[[Settings, bool], list[Finding]]


def _commands_need_runner(settings: Settings) -> bool:
    return os.geteuid() == 0 and not settings.allow_root_commands


def create_runner_user(name: str) -> None:
    """Create the runner user and group with ``useradd``; RuntimeError saying why not.
    Another process creating it at the same moment counts as success."""
    if not _USER_NAME.fullmatch(name):
        raise RuntimeError(f"{name!r} is not a user name useradd accepts")
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise RuntimeError("useradd is not installed: create the user with your system's tools")
    shell = next((s for s in NOLOGIN_SHELLS if os.path.exists(s)), "/bin/false")
    argv = [useradd, *USERADD[1:], "--shell", shell, name]
    for _ in range(_LOCK_RETRIES):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0 or _user_exists(name):
            return
        if done.returncode != _LOCKED_EXIT:
            break
        time.sleep(0.1)
    raise RuntimeError(f"useradd failed ({done.returncode}): {done.stderr.strip()}")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def check_runner_user(settings: Settings, fix: bool) -> list[Finding]:
    """The unprivileged user command operations run as when the service is root."""
    name = settings.runner_user
    label = f"runner user {name}"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is not None:
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            return [Finding(label, False, f"is privileged (uid {entry.pw_uid}, gid {entry.pw_gid})")]
        return [Finding(label, True, f"exists (uid {entry.pw_uid}, gid {entry.pw_gid})")]
    if not _commands_need_runner(settings):
        return [Finding(label, True, "absent; needed only when the service runs as root")]
    if not fix:
        return [Finding(label, False, "missing: command operations fail until it exists (--fix creates it)")]
    try:
        create_runner_user(name)
    except (RuntimeError, OSError) as exc:
        return [Finding(label, False, f"missing and could not be created: {exc}")]
    entry = pwd.getpwnam(name)
    return [Finding(label, True, f"created (uid {entry.pw_uid}, gid {entry.pw_gid})", fixed=True)]


def _runner_or_self(settings: Settings) -> Identity | None:
    return runner_identity(settings) if _commands_need_runner(settings) else None


def check_work_root(settings: Settings, fix: bool) -> list[Finding]:
    """The directory commands run in: outside the data directory and usable by the runner."""
    root = work_root(settings)
    label = "command work root"
    data = Path(os.path.realpath(settings.data_dir))
    if root == data or data in root.parents or root in data.parents:
        return [Finding(label, False, f"{root} overlaps the data directory {data}: keep them apart")]
    try:
        identity = _runner_or_self(settings)
    except RunnerUnavailable:
        return [Finding(label, False, f"{root}: cannot check until the runner user exists")]
    who = identity.name if identity is not None else f"uid {os.geteuid()}"
    fixed = False
    if not root.is_dir():
        if root.exists():
            return [Finding(label, False, f"{root} exists and is not a directory")]
        if not fix:
            return [Finding(label, False, f"{root} is missing (--fix creates it; so does the first command)")]
        try:
            ensure_work_root(settings, identity)
        except OSError as exc:
            return [Finding(label, False, f"{root} could not be created: {exc}")]
        fixed = True
    problem = usable_by(root, identity)
    if problem:
        hint = f" (e.g. chown {identity.name}: {root}; chmod 0700 {root})" if identity else ""
        return [Finding(label, False, f"{problem}{hint}")]
    return [Finding(label, True, f"{root}: usable by {who}" + (" (created)" if fixed else ""), fixed=fixed)]


def check_command_identity(settings: Settings, fix: bool) -> list[Finding]:
    """Whether command operations would run as root, as the runner, or as the service."""
    label = "command identity"
    if os.geteuid() != 0:
        return [
            Finding(
                label,
                True,
                f"as the service's own user (uid {os.geteuid()}): it cannot change identity, so "
                "commands can read what the service can (docs/security.md, Command runner)",
            )
        ]
    if settings.allow_root_commands:
        return [Finding(label, False, "commands would run as root (PROVISIONING_ALLOW_ROOT_COMMANDS=true)")]
    try:
        identity = runner_identity(settings)
    except RunnerUnavailable as exc:
        return [Finding(label, False, str(exc))]
    assert identity is not None  # root without allow_root_commands always drops
    return [Finding(label, True, f"as {identity.name} (uid {identity.uid}), never as root")]


def check_store_text(settings: Settings, fix: bool) -> list[Finding]:
    """No row of the embedded store holds a NUL (which the engine stores but cannot
    return: every read of that row fails). With ``fix`` each one is rewritten with
    U+FFFD (provisioning/repair.py); the service must be stopped, since it locks the store."""
    label = "store text"
    if not settings.is_embedded_file_store:
        return [Finding(label, True, "not an embedded store: run the doctor where the database runs")]
    if not Path(settings.resolved_db_url.split("://", 1)[1]).exists():
        return [Finding(label, True, "no store yet")]
    try:
        return [asyncio.run(_store_text(settings, fix, label))]
    except StoreLocked:
        return [Finding(label, False, "the store is in use: stop the service, then run the doctor again")]


async def _store_text(settings: Settings, fix: bool, label: str) -> Finding:
    store = open_store(settings)
    await store.open()
    try:
        damaged = await scan_store(store)
        if not damaged:
            return Finding(label, True, "no row holds a NUL")
        where = ", ".join(f"{table} ({rows})" for table, rows in sorted(damaged.items()))
        if not fix:
            return Finding(label, False, f"rows holding NUL, unreadable until repaired: {where} (--repair)")
        report = await repair_store(store)
        return Finding(
            label, True, f"NUL replaced by U+FFFD in {where}; audit chain {report.audit_chain}", fixed=True
        )
    finally:
        await store.close()


# The data directory's check lives with the start-up code that applies it (shared/store/fsperms.py).
CHECKS: list[Check] = [
    check_data_dir,
    check_store_text,
    check_runner_user,
    check_work_root,
    check_command_identity,
]


def run_checks(settings: Settings, fix: bool, checks: Sequence[Check] | None = None) -> list[Finding]:
    """Every check in order; a check that raises is reported as a failed finding."""
    findings: list[Finding] = []
    for check in CHECKS if checks is None else checks:
        try:
            findings.extend(check(settings, fix))
        except Exception as exc:
            findings.append(Finding(check.__name__, False, f"the check itself failed: {exc!r}"))
    return findings


def render(findings: Sequence[Finding]) -> str:
    """A table: status, what was checked, the details."""
    rows = [("STATUS", "CHECK", "DETAILS")]
    for f in findings:
        rows.append(("FAIL" if not f.ok else "fixed" if f.fixed else "ok", f.name, f.message))
    width0 = max(len(r[0]) for r in rows)
    width1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{width0}}  {b:<{width1}}  {c}".rstrip() for a, b, c in rows)


def main(settings: Settings, fix: bool, out: TextIO | None = None) -> int:
    """Print the report; 0 when every finding is ok, else 1."""
    findings = run_checks(settings, fix)
    print(render(findings), file=out if out is not None else sys.stdout)
    return 0 if all(f.ok for f in findings) else 1
