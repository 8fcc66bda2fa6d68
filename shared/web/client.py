"""Who is on the other end of a request: the client address, behind trusted proxies only."""

from __future__ import annotations

from aiohttp import web


def client_ip(request: web.Request, trusted_proxies: tuple[str, ...] = ()) -> str:
    """The peer address; ``X-Forwarded-For`` is believed only from a trusted proxy.

    Walking the header from the right, the first address that is not itself a
    trusted proxy is the client: what is left of it could have been forged.
    """
    peer = request.remote or "unknown"
    if not trusted_proxies or peer not in trusted_proxies:
        return peer
    forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([p for p in forwarded if p]):
        if hop not in trusted_proxies:
            return hop
    return peer
