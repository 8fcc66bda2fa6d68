"""A small HTTP client for the CLI: envelope-aware, token from the environment or a file."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

TOKEN_FILE = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "provisioning" / "token.json"


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


def saved_token() -> str | None:
    env = os.environ.get("PROVISIONING_TOKEN")
    if env:
        return env
    try:
        doc = json.loads(TOKEN_FILE.read_text())
    except (OSError, ValueError):
        return None
    token = doc.get("token")
    return str(token) if token else None


def save_token(doc: dict[str, Any]) -> Path:
    """Write the login answer (tokens included) readable by its owner only, from the start."""
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(doc))
    TOKEN_FILE.chmod(0o600)  # an older file may have had wider rights
    return TOKEN_FILE


def _saved_doc() -> dict[str, Any]:
    try:
        doc = json.loads(TOKEN_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


async def refresh_saved_token(control_center_url: str) -> str | None:
    """Trade the saved refresh token for a new access token (rotating it), and save both."""
    doc = _saved_doc()
    refresh = doc.get("refresh_token")
    if not refresh:
        return None
    async with Client(control_center_url) as cc:
        try:
            fresh = await cc.call("POST", "/auth/refresh", {"refresh_token": refresh})
        except (ApiError, aiohttp.ClientError):
            return None
    doc.update(fresh)
    save_token(doc)
    token = fresh.get("token")
    return str(token) if token else None


Refresher = Callable[[], Awaitable[str | None]]


class Client:
    def __init__(self, base_url: str, token: str | None = None, refresher: Refresher | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.refresher = refresher  # called once on a 401 (an access token lasts 15 min)

    async def __aenter__(self) -> Client:
        headers = {"Accept": "application/vnd.provisioning.v1+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.session = aiohttp.ClientSession(headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            return await self._call(method, path, body, params)
        except ApiError as exc:
            if exc.status != 401 or self.refresher is None:
                raise
            token, self.refresher = await self.refresher(), None
            if token is None:
                raise
            self.token = token
            self.session.headers["Authorization"] = f"Bearer {token}"
            return await self._call(method, path, body, params)

    async def _call(self, method: str, path: str, body: Any, params: dict[str, Any] | None) -> Any:
        async with self.session.request(method, self.base_url + path, json=body, params=params) as resp:
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                raise ApiError(resp.status, await resp.text()) from None
        if not isinstance(doc, dict) or not doc.get("success"):
            message = doc.get("error") if isinstance(doc, dict) else str(doc)
            details = doc.get("details") if isinstance(doc, dict) else None
            raise ApiError(resp.status, str(message), details)
        return doc.get("data")
