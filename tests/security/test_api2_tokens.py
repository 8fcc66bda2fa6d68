"""Access tokens seen by both services: what is accepted and everything that is refused
(expired, tampered, ``alg: none``, HS256 signed with the public key, another key,
another audience, revoked)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.security.backend import SECURITY, Security
from shared.security.tokens import utcnow
from tests.helpers.services import ADMIN_PASSWORD, Services, bearer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(sign(head.encode()))


def security(services: Services) -> Security:
    return services.cc.app[SECURITY]


async def refused_by_both(services: Services, token: str) -> None:
    for client, path in ((services.orch, "/tasks"), (services.cc, "/users")):
        resp = await client.get(path, headers=bearer(token))
        doc = await resp.json()
        assert resp.status == 401, (path, doc)
        assert doc["success"] is False and doc["code"] == "unauthorized"


async def test_one_security_serves_both_services(services: Services) -> None:
    assert services.cc.app[SECURITY] is services.orch.app[SECURITY]


async def test_claims_header_and_jwks(services: Services) -> None:
    token = await services.admin()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) >= {"iss", "aud", "sub", "jti", "roles", "amr", "iat", "exp"}
    assert claims["amr"] == ["pwd", "otp"]
    assert claims["roles"] == ["admin"]
    assert claims["exp"] - claims["iat"] == 900
    resp = await services.cc.get("/.well-known/jwks.json")
    assert resp.status == 200
    jwks = await resp.json()
    [key] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    assert "d" not in key  # never the private half
    public = jwt.PyJWK(key).key
    verified = jwt.decode(token, public, algorithms=["EdDSA"], audience="provisioning")
    assert verified["sub"] == claims["sub"]


async def test_the_key_pair_is_kept_in_the_store(services: Services) -> None:
    before = security(services).keys.signing_key.kid
    rows = await services.store.query("SELECT * FROM jwt_key")
    assert [r["id"] for r in rows] == [before]
    other = Security(services.cc.app[SECURITY].settings)
    await other.start(services.store)  # a second process on the same database
    try:
        assert other.keys.signing_key.kid == before
    finally:
        await other.stop()


async def test_expired_token_is_refused(services: Services) -> None:
    await services.admin()
    issued = security(services).tokens.issue(
        user_id="u",
        username="admin",
        roles=["admin"],
        amr=["pwd", "otp"],
        session_id=None,
        now=utcnow() - timedelta(hours=1),
    )
    services.secrets.add(issued.token)
    await refused_by_both(services, issued.token)
    resp = await services.orch.get("/tasks", headers=bearer(issued.token))
    assert (await resp.json())["error"] == "the token has expired"


async def test_tampered_token_is_refused(services: Services) -> None:
    admin = await services.admin()
    _, token = await services.user("viewer1", "viewer", admin_token=admin)
    head, payload, sig = token.split(".")
    claims = json.loads(unb64(payload))
    claims["roles"] = ["admin"]
    tampered = f"{head}.{b64(json.dumps(claims).encode())}.{sig}"
    services.secrets.add(tampered)
    await refused_by_both(services, tampered)
    # the genuine one still works for what a viewer may do
    resp = await services.orch.get("/tasks", headers=bearer(token))
    assert resp.status == 200


async def test_alg_none_is_refused(services: Services) -> None:
    token = await services.admin()
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    unsigned = forge({"alg": "none", "typ": "JWT", "kid": kid}, claims, lambda _m: b"")
    await refused_by_both(services, unsigned)
    await refused_by_both(services, unsigned.rsplit(".", 1)[0] + ".")


async def test_hs256_signed_with_the_public_key_is_refused(services: Services) -> None:
    token = await services.admin()
    claims = jwt.decode(token, options={"verify_signature": False})
    key = security(services).keys.signing_key
    pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for secret in (pem, raw):
        confused = forge(
            {"alg": "HS256", "typ": "JWT", "kid": key.kid},
            claims,
            lambda m, s=secret: hmac.new(s, m, hashlib.sha256).digest(),
        )
        await refused_by_both(services, confused)


async def test_token_from_another_key_or_audience_is_refused(services: Services) -> None:
    token = await services.admin()
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    stranger = Ed25519PrivateKey.generate()
    for key_id in (kid, "unknown-kid"):
        forged = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": key_id})
        services.secrets.add(forged)
        await refused_by_both(services, forged)
    own = security(services).keys.signing_key.private_key
    for change in ({"aud": "someone-else"}, {"iss": "someone-else"}):
        forged = jwt.encode({**claims, **change}, own, algorithm="EdDSA", headers={"kid": kid})
        services.secrets.add(forged)
        await refused_by_both(services, forged)
    for garbage in ("not-a-token", "a.b.c", ""):
        resp = await services.orch.get("/tasks", headers={"Authorization": f"Bearer {garbage}"})
        assert resp.status == 401
    resp = await services.orch.get("/tasks", headers={"Authorization": f"Basic {token}"})
    assert resp.status == 401


async def test_revoked_token_is_refused_by_both(services: Services) -> None:
    data = await services.token("admin", ADMIN_PASSWORD)
    token = data["token"]
    resp = await services.orch.get("/tasks", headers=bearer(token))
    assert resp.status == 200  # verified, and now cached
    resp = await services.cc.post("/auth/logout", headers=bearer(token))
    assert resp.status == 200
    assert (await resp.json())["data"] == "Successfully logged out"
    await refused_by_both(services, token)
    resp = await services.orch.get("/tasks", headers=bearer(token))
    assert (await resp.json())["error"] == "the token has been revoked"


async def test_query_token_is_accepted_on_streams_only(services: Services) -> None:
    token = await services.admin()
    resp = await services.orch.get("/tasks", params={"token": token})
    assert resp.status == 401
    assert "only on the event streams" in (await resp.json())["error"]
    resp = await services.orch.post("/rollback/checkpoints", params={"token": token}, json={"name": "x"})
    assert resp.status == 401
    resp = await services.orch.get("/events", params={"token": token})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    resp.close()
