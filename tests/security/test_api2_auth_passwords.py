"""API2 broken authentication: weak passwords and usernames that differ only in case.

Issue 8, finding 8: passwords of 12 spaces or ``aaaaaaaaaaaa`` were accepted, and
``Admin`` could be created beside ``admin``. Now the policy refuses whitespace,
too few distinct characters, the username and the 10,000 most common passwords
(422 naming the field), and usernames are unique regardless of case (a UNIQUE
index on the lowercased name; migration 0010 keeps existing duplicates usable).
"""

from __future__ import annotations

from typing import Any

from control_center.passwords import common_passwords
from control_center.repositories import UserRepository
from shared.store.schema import apply_migrations
from shared.store.store import Store
from shared.store.writes import Stmt
from tests.helpers.services import ADMIN_PASSWORD, USER_PASSWORD, Services, bearer

WEAK = [
    (" " * 12, "whitespace_only"),
    ("\t \n " * 4, "whitespace_only"),
    ("aaaaaaaaaaaa", "too_simple"),
    ("abababababab", "too_simple"),
    ("1qaz2wsx3edc", "common"),
    ("Qwerty123456", "common"),
    ("Dragon2024!!!", "common"),  # a common word dressed up
    ("alice-the-great", "contains_username"),
    ("ALICEalice1234", "contains_username"),
]


async def create(services: Services, admin: str, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await services.cc.post("/users", headers=bearer(admin), json=body)
    return resp.status, await resp.json()


def field_error(doc: dict[str, Any]) -> tuple[str, str]:
    [error] = doc["details"]["fields"]
    return error["field"], error["type"]


async def test_weak_passwords_are_refused_everywhere_one_is_set(services: Services) -> None:
    admin = await services.admin()
    for password, kind in WEAK:
        status, doc = await create(services, admin, username="alice", password=password, roles=["viewer"])
        assert status == 422, (password, doc)
        assert field_error(doc) == ("password", kind), password
    status, doc = await create(services, admin, username="alice", password=USER_PASSWORD, roles=["viewer"])
    assert status == 201, doc
    uid = doc["data"]["id"]
    # an admin's reset
    resp = await services.cc.put(f"/users/{uid}", headers=bearer(admin), json={"password": "Alice-again-1"})
    doc = await resp.json()
    assert resp.status == 422 and field_error(doc) == ("password", "contains_username")
    # one's own change names its field
    token = (await services.token("alice", USER_PASSWORD))["token"]
    resp = await services.cc.post(
        "/users/me/password",
        headers=bearer(token),
        json={"current_password": USER_PASSWORD, "new_password": "password1234"},
    )
    doc = await resp.json()
    assert resp.status == 422 and field_error(doc) == ("new_password", "common")


def test_the_shipped_list_has_the_top_10000() -> None:
    common = common_passwords()
    assert len(common) >= 9_900  # case-folded duplicates merge
    assert {"123456", "password", "qwerty", "1qaz2wsx3edc"} <= common


async def test_usernames_are_unique_regardless_of_case(services: Services) -> None:
    admin = await services.admin()
    for name in ("Admin", "ADMIN", "aDmIn"):
        status, doc = await create(services, admin, username=name, password=USER_PASSWORD, roles=["viewer"])
        assert status == 409, doc
        assert doc["details"]["fields"][0]["field"] == "username"
    status, _ = await create(services, admin, username="Bob", password=USER_PASSWORD, roles=["viewer"])
    assert status == 201
    status, _ = await create(services, admin, username="bob", password=USER_PASSWORD, roles=["viewer"])
    assert status == 409
    # the store itself refuses a second spelling (what a concurrent create would meet)
    rows = await services.store.query("SELECT username, username_key FROM user ORDER BY username_key")
    assert [(r["username"], r["username_key"]) for r in rows] == [("admin", "admin"), ("Bob", "bob")]


async def test_login_ignores_the_case_of_the_username(services: Services) -> None:
    admin = await services.admin()
    await create(services, admin, username="Carol", password=USER_PASSWORD, roles=["viewer"])
    for spelling in ("carol", "CAROL", "Carol"):
        status, doc = await services.login(spelling, USER_PASSWORD)
        assert status == 200, doc
        assert doc["data"]["user"]["username"] == "Carol"
    status, doc = await services.login("ADMIN", ADMIN_PASSWORD, services.code("admin"))
    assert status == 200 and doc["data"]["user"]["username"] == "admin"


async def test_migration_keeps_existing_case_duplicates_usable(store: Store) -> None:
    # a store from before migration 0010 with "admin", "Admin" and "ADMIN"
    await store.write(
        Stmt("REMOVE INDEX user_username_key ON user"), Stmt("DELETE schema_migration WHERE version = '0010'")
    )
    for i, (name, created) in enumerate(
        [("admin", "2024-01-01"), ("Admin", "2024-01-02"), ("ADMIN", "2024-01-03")]
    ):
        await store.write(
            Stmt(
                "CREATE type::thing('user', $id) CONTENT $row",
                {"id": f"u{i}", "row": {"username": name, "created_at": created}},
            )
        )
    await apply_migrations(store)
    rows = await store.query("SELECT id, username, username_key, created_at FROM user ORDER BY created_at")
    # the oldest keeps the name; the later ones keep their exact spelling only
    assert [(r["username"], r["username_key"]) for r in rows] == [
        ("admin", "admin"),
        ("Admin", "admin#u1"),
        ("ADMIN", "admin#u2"),
    ]
    repo = UserRepository(store)
    assert (await repo.by_username("aDmIn"))["id"] == "u0"  # type: ignore[index]
    assert (await repo.by_username("Admin"))["id"] == "u1"  # type: ignore[index]
    assert (await repo.by_username("ADMIN"))["id"] == "u2"  # type: ignore[index]
