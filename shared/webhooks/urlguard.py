"""Which webhook targets are allowed: http(s) only, and no loopback or private ranges.

A name is checked when the webhook is registered and again, through
:class:`GuardedResolver`, every time it is resolved for a delivery, so a name
that later resolves to an internal address (DNS rebinding) is still refused.
``PROVISIONING_WEBHOOKS_ALLOW_PRIVATE=true`` lifts the address rule (tests,
private deployments).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from shared.errors import ValidationFailed

RESOLVE_TIMEOUT_S = 2.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """A delivery target resolved only to addresses the guard refuses."""


# IPv6 prefixes that carry an IPv4 address inside: NAT64 (well-known and local-use)
# and the deprecated IPv4-compatible form. Through them an "IPv6" target can reach
# an internal IPv4 host, so the embedded address is what gets judged.
_EMBEDS_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
)


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared or reserved —
    also for IPv4 addresses carried inside IPv6 (mapped, 6to4, NAT64, compatible)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _EMBEDS_IPV4):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded.is_global and not embedded.is_multicast
    return ip.is_global and not ip.is_multicast


def _refuse(url: str, why: str) -> ValidationFailed:
    return ValidationFailed(
        f"webhook url {url!r} is not allowed: {why}",
        details={"fields": [{"field": "url", "message": why}]},
    )


def parse_target(url: str, *, allow_private: bool) -> URL:
    """Syntax and literal-address checks that need no DNS (used before every send too)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise _refuse(url, f"not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise _refuse(url, "only http and https URLs are delivered to")
    host = parsed.raw_host
    if not host:
        raise _refuse(url, "the URL has no host")
    if parsed.user is not None or parsed.password is not None:
        # Credentials in a URL end up shown and logged wherever the URL is.
        raise _refuse(
            url.split("@", 1)[-1],
            "credentials in the URL are not accepted; consumers verify the signature instead",
        )
    if allow_private:
        return parsed
    # A trailing dot makes a name absolute ("localhost." is localhost): compare without it.
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        raise _refuse(url, f"{host} is a local name")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return parsed
    if not is_public(ip):
        raise _refuse(url, f"{ip} is a loopback, private or reserved address")
    return parsed


async def validate_target(url: str, *, allow_private: bool) -> str:
    """Check a URL at registration, resolving its name; 422 when it is refused.

    A name that does not resolve now is accepted (the endpoint may not exist
    yet); the resolver guard refuses it later if it resolves somewhere private.
    """
    parsed = parse_target(url, allow_private=allow_private)
    host = parsed.raw_host or ""
    if allow_private:
        return str(parsed)
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.strip("[]"))
        return str(parsed)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, parsed.port or 443, type=socket.SOCK_STREAM)
    except UnicodeError:  # the name cannot be encoded for DNS (IDNA): nothing could deliver to it
        raise _refuse(url, "the host is not a valid domain name") from None
    except (OSError, TimeoutError):
        return str(parsed)
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not is_public(ip):
            raise _refuse(url, f"{host} resolves to {ip}, a loopback, private or reserved address")
    return str(parsed)


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default and drops every address the guard refuses."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_public(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise AddressRefused(f"{host} resolves only to loopback, private or reserved addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"GuardedResolver({self._inner!r})"


def connector_kwargs(allow_private: bool) -> dict[str, Any]:
    """Arguments for the dispatcher's ``TCPConnector``."""
    return {} if allow_private else {"resolver": GuardedResolver()}
