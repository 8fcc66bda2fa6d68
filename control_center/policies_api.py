"""``/policies``: the seed's policy documents, plus one, delete, and previous versions."""

from __future__ import annotations

from aiohttp import web

from control_center.keys import POLICIES
from control_center.models import (
    POLICY_CREATED,
    POLICY_VERSION,
    POLICY_VIEW,
    CreatePolicy,
    UpdatePolicy,
)
from control_center.policies import PolicyChanges, rules_from
from control_center.views import policy_version_view, policy_view
from shared.security.actor import actor_of
from shared.security.audit import AUDIT_DETAILS
from shared.web.envelope import Counted, ok, paginated
from shared.web.routing import MESSAGE, Api, OffsetPageQuery, array

api = Api()
TAGS = ("policies",)


@api.route(
    "GET",
    "/policies",
    resource="policies",
    action="read",
    query=OffsetPageQuery,
    tags=TAGS,
    response=array(POLICY_VIEW),
)
async def list_policies(request: web.Request, query: OffsetPageQuery) -> web.Response:
    rows, total = await request.app[POLICIES].page(query.limit, query.offset)
    return paginated(request, [policy_view(r) for r in rows], query, Counted(total))


@api.route(
    "POST",
    "/policies",
    resource="policies",
    action="create",
    body=CreatePolicy,
    tags=TAGS,
    status=201,
    response=POLICY_CREATED,
    errors=(409,),
)
async def create_policy(request: web.Request, body: CreatePolicy) -> web.Response:
    """Create a policy; it applies from the next request on."""
    rules = rules_from([r.model_dump() for r in body.rules])
    row = await request.app[POLICIES].create(
        actor_of(request),
        name=body.name,
        version=body.version,
        description=body.description,
        rules=rules,
        enabled=body.enabled,
    )
    request[AUDIT_DETAILS] = {"policy_id": row["id"], "name": row["name"], "version": row["version"]}
    return ok({"id": row["id"], "name": row["name"], "version": row["version"]}, status=201)


@api.route("GET", "/policies/{id}", resource="policies", action="read", tags=TAGS, response=POLICY_VIEW)
async def get_policy(request: web.Request) -> web.Response:
    return ok(policy_view(await request.app[POLICIES].get(request.match_info["id"])))


@api.route(
    "GET",
    "/policies/{id}/versions",
    resource="policies",
    action="read",
    tags=TAGS,
    response=array(POLICY_VERSION),
)
async def policy_versions(request: web.Request) -> web.Response:
    """Previous versions of a policy, newest first (the current one is GET /policies/{id})."""
    rows = await request.app[POLICIES].versions(request.match_info["id"])
    return ok([policy_version_view(r) for r in rows])


@api.route(
    "PUT",
    "/policies/{id}",
    resource="policies",
    action="update",
    body=UpdatePolicy,
    tags=TAGS,
    response=MESSAGE,
    errors=(409,),
)
async def update_policy(request: web.Request, body: UpdatePolicy) -> web.Response:
    """Change a policy; the previous version is kept and the change applies at once."""
    rules = rules_from([r.model_dump() for r in body.rules]) if body.rules is not None else None
    changes = PolicyChanges(
        name=body.name, version=body.version, description=body.description, rules=rules, enabled=body.enabled
    )
    row = await request.app[POLICIES].update(actor_of(request), request.match_info["id"], changes)
    request[AUDIT_DETAILS] = {"policy_id": row["id"], "name": row["name"], "version": row["version"]}
    return ok("Policy updated successfully")


@api.route(
    "DELETE",
    "/policies/{id}",
    resource="policies",
    action="delete",
    tags=TAGS,
    response=MESSAGE,
    errors=(409,),
)
async def delete_policy(request: web.Request) -> web.Response:
    row = await request.app[POLICIES].delete(actor_of(request), request.match_info["id"])
    request[AUDIT_DETAILS] = {"policy_id": row["id"], "name": row["name"]}
    return ok("Policy deleted successfully")
