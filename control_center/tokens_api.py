"""``/auth/tokens``: API tokens for automation and AI assistants (create, list, revoke)."""

from __future__ import annotations

from aiohttp import web

from control_center.keys import API_TOKENS
from control_center.models import API_TOKEN_CREATED, API_TOKEN_VIEW, ApiTokenQuery, CreateApiToken
from control_center.views import api_token_created_view, api_token_view
from shared.security.actor import actor_of
from shared.web.envelope import Counted, ok, paginated
from shared.web.routing import Api, array

api = Api()
TAGS = ("auth",)


@api.route(
    "POST",
    "/auth/tokens",
    resource="tokens",
    action="create",
    body=CreateApiToken,
    tags=TAGS,
    status=201,
    response=API_TOKEN_CREATED,
    errors=(409,),
)
async def create_token(request: web.Request, body: CreateApiToken) -> web.Response:
    """Create a named API token for yourself; the token is in this answer only.

    Needs a login session (with MFA when your role requires it); ``scopes`` narrow it."""
    created = await request.app[API_TOKENS].create(
        actor_of(request), name=body.name, expires_in_days=body.expires_in_days, scopes=body.scopes
    )
    return ok(api_token_created_view(created), status=201)


@api.route(
    "GET",
    "/auth/tokens",
    resource="tokens",
    action="read",
    query=ApiTokenQuery,
    tags=TAGS,
    response=array(API_TOKEN_VIEW),
)
async def list_tokens(request: web.Request, query: ApiTokenQuery) -> web.Response:
    """Your API tokens, newest first; ``all=true`` or ``user_id`` need tokens:manage (admins)."""
    tokens, total = await request.app[API_TOKENS].page(
        actor_of(request),
        user_id=query.user_id,
        everyone=query.all,
        active=query.active,
        limit=query.limit,
        offset=query.offset,
    )
    return paginated(request, [api_token_view(t) for t in tokens], query, Counted(total))


@api.route(
    "DELETE",
    "/auth/tokens/{id}",
    resource="tokens",
    action="revoke",
    tags=TAGS,
    response=API_TOKEN_VIEW,
    errors=(409,),
)
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke an API token (yours, or any with tokens:manage): refused at once by both services."""
    revoked = await request.app[API_TOKENS].revoke(actor_of(request), request.match_info["id"])
    return ok(api_token_view(revoked))
