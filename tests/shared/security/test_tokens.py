"""Tokens on their own: issue and verify, the verified-token cache, the denylist, and keys
created by one process and found by another."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from shared.errors import Unauthorized
from shared.security.repositories import KeyRepository, RevocationRepository, SubjectRepository
from shared.security.subjects import Subjects
from shared.security.tokens import KeyRing, Revocations, TokenService, utcnow
from shared.settings import Settings, load_settings
from shared.store.store import Store
from shared.store.writes import Stmt


@pytest.fixture
def settings() -> Settings:
    return load_settings(db_url="mem://")


async def service(store: Store, settings: Settings, *, create: bool = True) -> TokenService:
    """Tokens over the store, where user ``u1`` (alice, a viewer) exists."""
    await store.write(
        Stmt(
            "UPSERT type::thing('user', 'u1') CONTENT $row RETURN NONE",
            {"row": {"username": "alice", "roles": ["viewer"], "enabled": True}},
        )
    )
    keys = KeyRing()
    await keys.load(KeyRepository(store), create=create)
    revocations = Revocations()
    await revocations.load(RevocationRepository(store))
    subjects = Subjects()
    subjects.bind(SubjectRepository(store))
    return TokenService(settings, keys, revocations, subjects)


def issue(tokens: TokenService, **kw: object) -> tuple[str, str]:
    issued = tokens.issue(
        user_id="u1", username="alice", roles=["viewer"], amr=["pwd"], session_id="s1", **kw
    )  # type: ignore[arg-type]
    return issued.token, issued.jti


async def test_issue_and_verify(store: Store, settings: Settings) -> None:
    tokens = await service(store, settings)
    token, jti = issue(tokens)
    principal = await tokens.verify(token)
    assert (principal.user_id, principal.username, principal.roles) == ("u1", "alice", ("viewer",))
    assert principal.mfa is False and principal.token_id == jti
    assert principal.claims["sid"] == "s1"
    assert await tokens.verify(token) is principal  # the cache answered


async def test_denylist_by_token_and_by_session(store: Store, settings: Settings) -> None:
    tokens = await service(store, settings)
    first, jti = issue(tokens)
    second, _ = issue(tokens)
    await tokens.verify(first)
    await tokens.revocations.revoke(until=utcnow() + timedelta(minutes=20), jti=jti)
    with pytest.raises(Unauthorized):
        await tokens.verify(first)
    assert (await tokens.verify(second)).username == "alice"
    await tokens.revocations.revoke(until=utcnow() + timedelta(minutes=20), sid="s1")
    with pytest.raises(Unauthorized):
        await tokens.verify(second)
    # a process started later loads the denylist from the store
    later = await service(store, settings, create=False)
    for token in (first, second):
        with pytest.raises(Unauthorized):
            await later.verify(token)


async def test_expired_tokens_leave_the_cache(store: Store, settings: Settings) -> None:
    tokens = await service(store, settings)
    token, _ = issue(tokens, ttl_s=1, now=utcnow() - timedelta(seconds=30))
    with pytest.raises(Unauthorized, match="expired"):
        await tokens.verify(token)


async def test_keys_made_by_one_process_verify_in_another(store: Store, settings: Settings) -> None:
    verifier = await service(store, settings, create=False)
    assert verifier.keys.keys == {}
    issuer = await service(store, settings)
    token, _ = issue(issuer)
    verifier.keys._loaded_at = 0  # as if the last look was long ago
    assert (await verifier.verify(token)).username == "alice"
    assert verifier.keys.jwks()["keys"][0]["kid"] == jwt.get_unverified_header(token)["kid"]


async def test_tokens_without_the_required_claims_are_refused(store: Store, settings: Settings) -> None:
    tokens = await service(store, settings)
    key = tokens.keys.signing_key
    now = int(utcnow().timestamp())
    base = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "u1",
        "username": "alice",
        "jti": "j",
        "iat": now,
        "exp": now + 60,
        "roles": ["viewer"],
        "amr": ["pwd"],
    }
    for missing in ("exp", "jti", "aud", "roles"):
        claims = {k: v for k, v in base.items() if k != missing}
        token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
        with pytest.raises(Unauthorized):
            await tokens.verify(token)
