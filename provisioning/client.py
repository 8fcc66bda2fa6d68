"""A small HTTP client for the CLI: envelope-aware, token from the environment or a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp

TOKEN_FILE = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "provisioning" \
    / "token.json"


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
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    TOKEN_FILE.write_text(json.dumps(doc))
    TOKEN_FILE.chmod(0o600)
    return TOKEN_FILE


class Client:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def __aenter__(self) -> Client:
        headers = {"Accept": "application/vnd.provisioning.v1+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.session = aiohttp.ClientSession(headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None,
                   params: dict[str, Any] | None = None) -> Any:
        async with self.session.request(
            method, self.base_url + path, json=body, params=params
        ) as resp:
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                raise ApiError(resp.status, await resp.text()) from None
        if not isinstance(doc, dict) or not doc.get("success"):
            message = doc.get("error") if isinstance(doc, dict) else str(doc)
            details = doc.get("details") if isinstance(doc, dict) else None
            raise ApiError(resp.status, str(message), details)
        return doc.get("data")
