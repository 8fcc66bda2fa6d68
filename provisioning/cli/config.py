"""Where the CLI keeps its sessions, and which service and token a command uses.

The credentials file, ``$XDG_CONFIG_HOME/provisioning/credentials.json``
(``~/.config/provisioning/credentials.json`` by default), holds named contexts,
like kubectl's::

    {"current_context": "prod",
     "contexts": {"prod": {"server": "https://cc.example:9080",
                           "orchestrator": "https://orch.example:9090",
                           "token": "…", "expires_at": "…",
                           "refresh_token": "…", "refresh_expires_at": "…",
                           "user": {"username": "alice", …}}}}

It is written with mode 0600 in a 0700 directory, and refused when its mode lets
anyone but its owner read or write it. A value comes from the command-line flag,
else the environment (``PROVISIONING_URL``, ``PROVISIONING_ORCHESTRATOR_URL``,
``PROVISIONING_TOKEN``, ``PROVISIONING_CONTEXT``), else the context.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_CONTEXT = "default"
DEFAULT_SERVER = "http://127.0.0.1:9080"
ORCHESTRATOR_PORT = 9090
REFRESH_MARGIN_S = 30  # refresh an access token this close to its expiry before using it


class CredentialsError(Exception):
    """The credentials file cannot be used as it is (unsafe mode, unreadable, malformed)."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "provisioning"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def orchestrator_of(server: str) -> str:
    """The orchestrator beside a control center: the same scheme and host, port 9090."""
    parts = urlsplit(server)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme or "http", f"{host}:{ORCHESTRATOR_PORT}", "", "", ""))


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time of the API (``…Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Credentials:
    """The credentials file: read (its mode checked) and written back whole, 0600."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or credentials_path()
        self.doc: dict[str, Any] = {"current_context": None, "contexts": {}}
        self._load()

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CredentialsError(f"cannot read {self.path}: {exc.strerror}") from exc
        if st.st_mode & 0o077:
            raise CredentialsError(
                f"{self.path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"it holds tokens: run 'chmod 600 {self.path}' (or delete it and log in again)"
            )
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise CredentialsError(
                f"{self.path} is not a credentials file ({exc}); delete it and log in again"
            ) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("contexts", {}), dict):
            raise CredentialsError(f"{self.path} is not a credentials file; delete it and log in again")
        doc.setdefault("contexts", {})
        doc.setdefault("current_context", None)
        self.doc = doc

    @property
    def contexts(self) -> dict[str, dict[str, Any]]:
        contexts: dict[str, dict[str, Any]] = self.doc["contexts"]
        return contexts

    @property
    def current(self) -> str | None:
        name = self.doc.get("current_context")
        return str(name) if name else None

    def save(self) -> Path:
        """Write the file readable by its owner only, from the first byte."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(self.doc, indent=2))
        os.chmod(tmp, 0o600)  # a leftover file may have had wider rights
        os.replace(tmp, self.path)
        return self.path

    def put(self, name: str, values: dict[str, Any], *, make_current: bool = True) -> Path:
        self.contexts[name] = values
        if make_current or not self.current:
            self.doc["current_context"] = name
        return self.save()

    def delete(self, name: str) -> bool:
        if self.contexts.pop(name, None) is None:
            return False
        if self.current == name:
            self.doc["current_context"] = next(iter(self.contexts), None)
        self.save()
        return True


@dataclass
class Target:
    """What a command talks to and as whom, after flags > environment > file."""

    context: str
    server: str
    orchestrator: str
    token: str | None
    refreshable: bool  # the token came from the context and its refresh token may renew it
    values: dict[str, Any] = field(default_factory=dict)  # the context as stored

    def expiring(self, now: datetime | None = None) -> bool:
        """The stored access token is expired, or about to be."""
        if not self.refreshable:
            return False
        expires = parse_time(self.values.get("expires_at"))
        if expires is None:
            return False
        now = now or datetime.now(UTC)
        return (expires - now).total_seconds() < REFRESH_MARGIN_S


def resolve(
    creds: Credentials,
    *,
    context: str | None = None,
    server: str | None = None,
    orchestrator: str | None = None,
    token: str | None = None,
) -> Target:
    """The target of a command: each value from its flag, else the environment, else the file."""
    env = os.environ
    name = context or env.get("PROVISIONING_CONTEXT") or creds.current or DEFAULT_CONTEXT
    stored = dict(creds.contexts.get(name) or {})
    if (
        (context or env.get("PROVISIONING_CONTEXT"))
        and name not in creds.contexts
        and not (server or env.get("PROVISIONING_URL"))
    ):
        known = ", ".join(sorted(creds.contexts)) or "none yet"
        raise CredentialsError(f"no context named {name!r} (contexts: {known}); log in with --context {name}")
    srv = server or env.get("PROVISIONING_URL") or stored.get("server") or DEFAULT_SERVER
    orch = (
        orchestrator
        or env.get("PROVISIONING_ORCHESTRATOR_URL")
        or (stored.get("orchestrator") if srv == stored.get("server") else None)
        or orchestrator_of(srv)
    )
    flag_token = token or env.get("PROVISIONING_TOKEN")
    stored_token = (
        stored.get("token") if srv.rstrip("/") == str(stored.get("server", "")).rstrip("/") else None
    )
    chosen = flag_token or stored_token
    return Target(
        context=name,
        server=srv.rstrip("/"),
        orchestrator=orch.rstrip("/"),
        token=str(chosen) if chosen else None,
        refreshable=not flag_token and bool(stored_token) and bool(stored.get("refresh_token")),
        values=stored,
    )
