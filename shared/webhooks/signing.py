"""Standard Webhooks signatures: signing our deliveries and verifying them as a consumer.

Headers: ``webhook-id`` (the idempotency key), ``webhook-timestamp`` (unix
seconds), ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``
and ``X-Signature-256: sha256=<hex HMAC-SHA256(key, body)>`` for GitHub-style
consumers. The key is the secret's bytes: the base64 after ``whsec_`` decoded,
or the UTF-8 of a plain secret from the ``[webhooks]`` configuration.

While an old secret is in its grace period after a rotation, both headers carry
one signature per secret, newest first, so a consumer holding either secret
verifies: ``webhook-signature`` space-separated (the Standard Webhooks form),
``X-Signature-256`` as an RFC 9110 list, ``sha256=<new>, sha256=<old>`` (what
repeated header lines fold into). A verifier accepts a delivery when any value
matches; outside a grace period each header holds exactly one value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from shared.errors import Unauthorized

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "provisioning-webhooks/1"


class WebhookVerificationError(Unauthorized):
    """A delivery whose headers, timestamp or signature do not check out."""

    code = "webhook_verification_failed"


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_`` base64 decoded, otherwise its UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from exc
    if not secret:
        raise ValueError("a webhook secret may not be empty")
    return secret.encode()


def signature_256(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(key, body)>`` (GitHub's ``X-Hub-Signature-256`` format)."""
    return "sha256=" + hmac.new(secret_key(secret), body, hashlib.sha256).hexdigest()


def sign_headers(
    msg_id: str, body: str, signing_secrets: Sequence[str], timestamp: int | None = None
) -> dict[str, str]:
    """Every header of a delivery. ``signing_secrets`` is newest first."""
    if not signing_secrets:
        raise ValueError("a delivery needs at least one secret")
    ts = int(time.time()) if timestamp is None else timestamp
    when = datetime.fromtimestamp(ts, UTC)
    signatures = [Webhook(secret_key(s)).sign(msg_id, when, body) for s in signing_secrets]
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(signatures),
        "X-Signature-256": ", ".join(signature_256(secret, body.encode()) for secret in signing_secrets),
    }


def verify_signature_256(secret: str, headers: Mapping[str, str], body: bytes | str) -> None:
    """Check ``X-Signature-256`` as a GitHub-style consumer should: any listed value may match.

    Raises :class:`WebhookVerificationError` when the header is missing or no value
    matches. (This header signs the body only: pair it with a check on
    ``webhook-id`` against replays, or use :func:`verify_webhook`.)
    """
    raw = body.encode() if isinstance(body, str) else body
    lower = {k.lower(): v for k, v in headers.items()}
    header = lower.get("x-signature-256")
    if not header:
        raise WebhookVerificationError("missing X-Signature-256 header")
    expected = signature_256(secret, raw).encode()
    if not any(hmac.compare_digest(v.strip().encode(), expected) for v in header.split(",")):
        raise WebhookVerificationError("no X-Signature-256 value matches the secret")


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes | str, tolerance_s: float = 300
) -> Any:
    """Check a delivery as a consumer would and return its parsed JSON body.

    Raises :class:`WebhookVerificationError` when a header is missing, the
    timestamp is further than ``tolerance_s`` from now (a replay), or no
    ``v1`` signature matches.
    """
    text = body.decode() if isinstance(body, bytes) else body
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signature = lower.get("webhook-signature")
    if not (msg_id and stamp and signature):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        ts = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not unix seconds") from None
    if abs(time.time() - ts) > tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance_s:g} s away from now")
    expected = Webhook(secret_key(secret)).sign(msg_id, datetime.fromtimestamp(ts, UTC), text)
    expected_sig = expected.split(",", 1)[1].encode()
    for candidate in signature.split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected_sig):
            return json.loads(text)
    raise WebhookVerificationError("no webhook-signature matches the secret")
