"""``/users``: the seed's user management, plus the caller's own profile and password."""

from __future__ import annotations

from aiohttp import web

from control_center.keys import MFA, PROFILE, USERS
from control_center.models import (
    USER_CREATED,
    USER_VIEW,
    CreateUser,
    PasswordChange,
    UpdateUser,
    UserQuery,
)
from control_center.users import UserChanges
from control_center.views import user_created_view, user_view
from shared.security.actor import actor_of
from shared.security.audit import AUDIT_DETAILS
from shared.web.envelope import ok, paginated
from shared.web.routing import MESSAGE, Api, array

api = Api()
TAGS = ("users",)


@api.route(
    "GET", "/users", resource="users", action="read", query=UserQuery, tags=TAGS, response=array(USER_VIEW)
)
async def list_users(request: web.Request, query: UserQuery) -> web.Response:
    """Users, oldest first; filter by ``role`` and ``enabled``."""
    listing = await request.app[USERS].page(
        role=query.role, enabled=query.enabled, limit=query.limit, offset=query.offset, cursor=query.cursor
    )
    return paginated(request, [user_view(u) for u in listing.items], query, listing)


@api.route(
    "POST",
    "/users",
    resource="users",
    action="create",
    body=CreateUser,
    tags=TAGS,
    status=201,
    response=USER_CREATED,
    errors=(409,),
)
async def create_user(request: web.Request, body: CreateUser) -> web.Response:
    """Create a user (password of at least the minimum length)."""
    user = await request.app[USERS].create(
        username=body.username,
        email=body.email,
        password=body.password,
        roles=[str(r) for r in body.roles],
        enabled=body.enabled,
    )
    request[AUDIT_DETAILS] = {"user_id": user.id, "username": user.username, "roles": list(user.roles)}
    return ok(user_created_view(user), status=201)


@api.route("GET", "/users/me", resource="profile", action="read", tags=TAGS, response=USER_VIEW)
async def get_me(request: web.Request) -> web.Response:
    """The caller's own user record."""
    return ok(user_view(await request.app[PROFILE].current(actor_of(request))))


@api.route(
    "POST",
    "/users/me/password",
    resource="profile",
    action="update",
    body=PasswordChange,
    tags=TAGS,
    response=MESSAGE,
)
async def change_my_password(request: web.Request, body: PasswordChange) -> web.Response:
    """Change one's own password; the caller's other sessions end."""
    await request.app[PROFILE].change_password(actor_of(request), body.current_password, body.new_password)
    return ok("Password changed")


@api.route("GET", "/users/{id}", resource="users", action="read", tags=TAGS, response=USER_VIEW)
async def get_user(request: web.Request) -> web.Response:
    return ok(user_view(await request.app[USERS].get(request.match_info["id"])))


@api.route(
    "PUT",
    "/users/{id}",
    resource="users",
    action="update",
    body=UpdateUser,
    tags=TAGS,
    response=MESSAGE,
    errors=(409,),
)
async def update_user(request: web.Request, body: UpdateUser) -> web.Response:
    """Change email, roles, enabled or (an admin's reset) the password."""
    user_id = request.match_info["id"]
    changes = UserChanges(
        email=body.email,
        roles=[str(r) for r in body.roles] if body.roles is not None else None,
        enabled=body.enabled,
        password=body.password,
    )
    await request.app[USERS].update(user_id, changes)
    request[AUDIT_DETAILS] = {
        "user_id": user_id,
        "fields": sorted(body.model_dump(exclude_unset=True, exclude={"password"}))
        + (["password"] if body.password is not None else []),
    }
    return ok("User updated successfully")


@api.route(
    "DELETE", "/users/{id}", resource="users", action="delete", tags=TAGS, response=MESSAGE, errors=(409,)
)
async def delete_user(request: web.Request) -> web.Response:
    user = await request.app[USERS].delete(request.match_info["id"])
    request[AUDIT_DETAILS] = {"user_id": user.id, "username": user.username}
    return ok("User deleted successfully")


@api.route("POST", "/users/{id}/mfa/reset", resource="users", action="update", tags=TAGS, response=MESSAGE)
async def reset_user_mfa(request: web.Request) -> web.Response:
    """An admin turns a user's MFA off (a lost device); they enrol again at next login."""
    user = await request.app[USERS].get(request.match_info["id"])
    await request.app[MFA].reset(actor_of(request), user)
    return ok("MFA reset; the user enrols again at the next login")
