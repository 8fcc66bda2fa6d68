"""Access tokens: Ed25519-signed JWTs, the key ring kept in the store, and the denylist.

The control center signs with the oldest key that has a private half and is not
retiring; every service verifies with the public keys (``kid`` picks one; ``GET
/.well-known/jwks.json`` publishes them). ``alg`` is pinned to EdDSA on verify,
so ``none`` and HS256-signed-with-the-public-key tokens are refused. The private
halves are sealed in the store (``shared/store/secrets.py``).

``provisioning keys rotate`` (:meth:`KeyRing.rotate`) adds a new signer and
retires the old one: it stops signing at once, and stays published and accepted
until every token it signed has expired (``retire_at``), then it is gone.

An EdDSA verify costs ~90 µs; the request path's budget is 150 µs, so verified
tokens are cached by their exact text until their ``exp`` and revocations are
checked against an in-memory denylist on every use. A token is honoured only
for a user that exists, is enabled and holds its roles (``shared/security/subjects.py``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import StoreError, Unauthorized
from shared.security.auth import Principal
from shared.security.repositories import KeyRepository, RevocationRepository
from shared.security.subjects import Subjects
from shared.settings import Settings

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
CACHE_MAX_ENTRIES = 20_000
KEY_RELOAD_MIN_INTERVAL_S = 5.0
KEY_REFRESH_S = 60.0  # a running service re-reads the keys this often (another's rotation)
CLOCK_SKEW_S = 5
MFA_SETUP_SCOPE = "mfa_setup"
PRUNE_ABOVE = 10_000  # denylist entries before expired ones are dropped
REQUIRED_CLAIMS = ["iss", "aud", "sub", "jti", "iat", "exp"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def retirement_delay_s(settings: Settings) -> float:
    """How long a rotated-out signing key stays published: until the last token it could
    have signed has expired, allowing for clock skew and for a running replica that
    has not re-read the keys yet."""
    longest = max(settings.access_token_ttl_s, settings.mfa_setup_token_ttl_s)
    return float(longest + CLOCK_SKEW_S) + KEY_REFRESH_S


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair; ``private_key`` is absent where a service only verifies."""

    kid: str
    public_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey | None
    created_at: datetime
    retire_at: datetime | None = None  # set by a rotation: gone from then on

    @classmethod
    def generate(cls, now: datetime | None = None) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(uuid.uuid4().hex[:16], private.public_key(), private, now or utcnow())

    def retired(self, now_s: float) -> bool:
        return self.retire_at is not None and self.retire_at.timestamp() <= now_s

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SigningKey:
        public = serialization.load_pem_public_key(row["public_pem"].encode())
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError(f"key {row['id']} is not an Ed25519 key")
        private = None
        if row.get("private_pem"):
            loaded = serialization.load_pem_private_key(row["private_pem"].encode(), None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"key {row['id']} is not an Ed25519 key")
            private = loaded
        return cls(str(row["id"]), public, private, row["created_at"], row.get("retire_at"))

    def to_row(self) -> dict[str, Any]:
        assert self.private_key is not None
        return {
            "public_pem": self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            "private_pem": self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "alg": ALGORITHM,
            "created_at": self.created_at,
        }

    def jwk(self) -> dict[str, Any]:
        doc: dict[str, Any] = jwt.algorithms.OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        doc.update({"kid": self.kid, "alg": ALGORITHM, "use": "sig"})
        return doc


class KeyRing:
    """The signing keys, loaded from the store (and created there at first start)."""

    def __init__(self) -> None:
        self.keys: dict[str, SigningKey] = {}
        self._repo: KeyRepository | None = None
        self._loaded_at = 0.0
        self.clock: Callable[[], float] = time.time  # tests move time with this

    async def load(self, repo: KeyRepository, *, create: bool) -> None:
        """Read every key; with ``create``, generate the first one if there is none."""
        self._repo = repo
        rows = await repo.all()
        if not any(r.get("private_pem") for r in rows) and create:
            key = SigningKey.generate()
            try:
                await repo.store.write(repo.insert(key.kid, key.to_row()))
                log.info("generated the JWT signing key", extra={"kid": key.kid})
            except StoreError:  # another process created one first: use theirs
                log.info("another process created the JWT signing key first")
            rows = await repo.all()
        now_s = self.clock()
        loaded = (SigningKey.from_row(r) for r in rows)
        self.keys = {k.kid: k for k in loaded if not k.retired(now_s)}
        self._loaded_at = time.monotonic()

    async def reload_if_stale(self, min_interval_s: float = KEY_RELOAD_MIN_INTERVAL_S) -> bool:
        """Re-read the keys (at most every ``min_interval_s``); True if that happened."""
        if self._repo is None or time.monotonic() - self._loaded_at < min_interval_s:
            return False
        await self.load(self._repo, create=False)
        return True

    def get(self, kid: str) -> SigningKey | None:
        """A key that may verify a token now (None if unknown or retired)."""
        key = self.keys.get(kid)
        if key is None or key.retired(self.clock()):
            return None
        return key

    @property
    def signing_key(self) -> SigningKey:
        for key in self.keys.values():  # oldest first: every replica converges on one
            if key.private_key is not None and key.retire_at is None:
                return key
        raise Unauthorized("no signing key is available; is the store initialised?")

    def jwks(self) -> dict[str, Any]:
        now_s = self.clock()
        return {"keys": [k.jwk() for k in self.keys.values() if not k.retired(now_s)]}

    async def rotate(self, retire_after_s: float) -> tuple[SigningKey, list[SigningKey]]:
        """A new signer; the keys that signed until now stop signing and are retired after
        ``retire_after_s`` (when every token they signed has expired). Returns the new key
        and the retiring ones."""
        assert self._repo is not None, "the key ring is not loaded"
        now = datetime.fromtimestamp(self.clock(), UTC)
        new = SigningKey.generate(now)
        retire_at = now + timedelta(seconds=retire_after_s)
        retiring = [k for k in self.keys.values() if k.retire_at is None]
        await self._repo.store.write(
            *(self._repo.retire(k.kid, retire_at) for k in retiring),
            self._repo.insert(new.kid, new.to_row()),
        )
        await self.load(self._repo, create=False)
        return new, [self.keys[k.kid] for k in retiring if k.kid in self.keys]

    async def prune(self) -> None:
        """Delete the keys whose retirement time has passed."""
        if self._repo is not None:
            now = datetime.fromtimestamp(self.clock(), UTC)
            await self._repo.store.write(self._repo.delete_retired(now))


class Revocations:
    """Denied token ids and session ids, each until the moment it could no longer be used."""

    def __init__(self) -> None:
        self.jtis: dict[str, float] = {}
        self.sids: dict[str, float] = {}
        self._repo: RevocationRepository | None = None
        self._synced_at: datetime | None = None

    async def load(self, repo: RevocationRepository) -> None:
        """The revocations still in force (at start: expired ones are left to
        :meth:`purge_expired`, in the background, however many there are)."""
        self._repo = repo
        now = utcnow()
        self._apply(await repo.active(now))
        self._synced_at = now

    async def purge_expired(self, chunk: int) -> int:
        """Forget stored revocations past their expiry, ``chunk`` per commit; how many went."""
        if self._repo is None:
            return 0
        total = 0
        while True:
            gone = int((await self._repo.store.write(self._repo.purge_expired(utcnow(), chunk)))[0] or 0)
            total += gone
            if gone < chunk:
                return total

    async def sync(self) -> None:
        """Pick up revocations other processes made since the last look."""
        if self._repo is None:
            return
        now = utcnow()
        since = (self._synced_at or now) - timedelta(seconds=CLOCK_SKEW_S)
        self._apply(await self._repo.created_since(since))
        self._synced_at = now
        self.prune()

    def _apply(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            until = row["expires_at"].timestamp()
            if row.get("jti"):
                self.jtis[str(row["jti"])] = until
            if row.get("sid"):
                self.sids[str(row["sid"])] = until

    async def revoke(self, *, until: datetime, jti: str | None = None, sid: str | None = None) -> None:
        """Persist, then apply: a token or a whole session is refused from now on."""
        assert self._repo is not None, "revocations are not loaded"
        row: dict[str, Any] = {"expires_at": until, "created_at": utcnow()}
        if jti:
            row["jti"] = jti
        if sid:
            row["sid"] = sid
        await self._repo.store.write(self._repo.insert(row))
        self._apply([row])
        if len(self.jtis) + len(self.sids) > PRUNE_ABOVE:
            self.prune()

    def is_revoked(self, jti: str | None, sid: str | None) -> bool:
        return (jti is not None and jti in self.jtis) or (sid is not None and sid in self.sids)

    def prune(self) -> None:
        now = time.time()
        self.jtis = {k: v for k, v in self.jtis.items() if v > now}
        self.sids = {k: v for k, v in self.sids.items() if v > now}


class ApiTokenVerifier(Protocol):
    """What verifies the bearer values that are API tokens (``shared/security/api_tokens.py``)."""

    async def verify(self, token: str) -> Principal: ...


# The first characters of an API token; every other bearer value is a JWT.
API_TOKEN_PREFIX = "pvt_"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime
    claims: dict[str, Any] = field(default_factory=dict)


class TokenService:
    """Issues and verifies access tokens; the verified-token cache lives here."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyRing,
        revocations: Revocations,
        subjects: Subjects,
        api_tokens: ApiTokenVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.revocations = revocations
        self.subjects = subjects
        self.api_tokens = api_tokens
        self._cache: dict[str, Principal] = {}

    def issue(
        self,
        *,
        user_id: str,
        username: str,
        roles: list[str] | tuple[str, ...],
        amr: list[str],
        session_id: str | None,
        scope: str | None = None,
        ttl_s: int | None = None,
        now: datetime | None = None,
    ) -> IssuedToken:
        """Sign a token for a user; ``scope`` narrows what it may be used for."""
        key = self.keys.signing_key
        assert key.private_key is not None
        issued = now or utcnow()
        expires = issued + timedelta(seconds=ttl_s or self.settings.access_token_ttl_s)
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": user_id,
            "jti": jti,
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "username": username,
            "roles": list(roles),
            "amr": amr,
        }
        if session_id:
            claims["sid"] = session_id
        if scope:
            claims["scope"] = scope
        token = jwt.encode(
            claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )
        return IssuedToken(token, jti, datetime.fromtimestamp(claims["exp"], UTC), claims)

    async def verify(self, token: str) -> Principal:
        """The principal a token (an access JWT or an API token) stands for, or ``Unauthorized``."""
        if token.startswith(API_TOKEN_PREFIX):
            if self.api_tokens is None:
                raise Unauthorized("API tokens are not accepted here", reason="invalid")
            return await self.api_tokens.verify(token)
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at is not None and cached.expires_at + CLOCK_SKEW_S > time.time():
                if self.revocations.is_revoked(cached.token_id, cached.claims.get("sid")):
                    raise Unauthorized(
                        "the token has been revoked", reason="revoked", user=_user_of(cached.claims)
                    )
                if not self.subjects.admits(cached):
                    await self.subjects.check(cached)
                return cached
            del self._cache[token]
        claims = await self.decode(token)
        principal = principal_from_claims(claims)
        if self.revocations.is_revoked(principal.token_id, claims.get("sid")):
            raise Unauthorized("the token has been revoked", reason="revoked", user=_user_of(claims))
        await self.subjects.check(principal)
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._evict()
        self._cache[token] = principal
        return principal

    async def decode(self, token: str, *, verify_exp: bool = True) -> dict[str, Any]:
        """Check signature, algorithm, issuer, audience and expiry; return the claims."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("the token is malformed", reason="malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"tokens must be signed with {ALGORITHM}", reason="invalid")
        kid = str(header.get("kid"))
        key = self.keys.get(kid)
        if key is None and kid not in self.keys.keys and await self.keys.reload_if_stale():
            key = self.keys.get(kid)
        if key is None:
            raise Unauthorized("the token was signed with an unknown or retired key", reason="invalid")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": REQUIRED_CLAIMS, "verify_exp": verify_exp},
            )
        except jwt.ExpiredSignatureError as exc:
            # The signature checked out (PyJWT verifies it before the claims): whose it is, is known.
            unverified = jwt.decode(token, options={"verify_signature": False})
            raise Unauthorized(
                "the token has expired",
                details={"reason": "expired"},
                reason="expired",
                user=_user_of(unverified),
            ) from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(
                "the token is not valid", details={"reason": str(exc)}, reason="invalid"
            ) from exc
        if not isinstance(claims.get("roles"), list) or not isinstance(claims.get("amr"), list):
            raise Unauthorized(
                "the token is not valid", details={"reason": "missing claims"}, reason="invalid"
            )
        return claims

    def forget(self, jti: str) -> None:
        """Drop a revoked token from the cache (the denylist refuses it anyway)."""
        for token, principal in list(self._cache.items()):
            if principal.token_id == jti:
                del self._cache[token]

    def _evict(self) -> None:
        now = time.time()
        self._cache = {
            t: p for t, p in self._cache.items() if p.expires_at is not None and p.expires_at > now
        }
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()


def _user_of(claims: dict[str, Any]) -> tuple[str, str] | None:
    """``(user_id, username)`` of a token whose signature was verified, for the audit log."""
    sub = claims.get("sub")
    if not isinstance(sub, str):
        return None
    return sub, str(claims.get("username", sub))


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    return Principal(
        user_id=str(claims["sub"]),
        username=str(claims.get("username", claims["sub"])),
        roles=tuple(str(r) for r in claims.get("roles", [])),
        mfa="otp" in claims.get("amr", []),
        token_id=str(claims["jti"]),
        expires_at=float(claims["exp"]),
        claims=claims,
    )
