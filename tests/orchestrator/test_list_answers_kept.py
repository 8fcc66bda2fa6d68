"""List pages read again while nothing was committed come from memory
(``Repository.kept``, shared/store/keyset.py ``Unchanged``); any change is seen by the
next read: new batches, their tasks, the totals, a cursor's next page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from orchestrator.keys import WORKFLOWS
from tests.helpers.orchestrator_api import data_of, run
from tests.helpers.pages import next_link


async def test_a_repeated_page_is_kept_and_a_change_is_seen_at_once(orch: Any) -> None:
    kept = orch.app[WORKFLOWS].repo.kept
    first = (await run(orch, {"id": "a1", "type": "server_batch"}, {"id": "a2", "type": "server_batch"}))[
        "batch_id"
    ]
    await orch.app[WORKFLOWS].repo.store.flush_lazy()
    listed = await data_of(orch, "/batch/operations", view="summary")
    tasks = await data_of(orch, "/tasks", limit=1)
    hits = kept.hits
    assert await data_of(orch, "/batch/operations", view="summary") == listed
    assert await data_of(orch, "/tasks", limit=1) == tasks
    assert kept.hits > hits  # answered from memory

    resp = await orch.get("/tasks", params={"limit": "1"})
    cursor = parse_qs(urlsplit(next_link(resp.headers) or "").query)["cursor"][0]
    second = (await run(orch, {"id": "b1", "type": "server_batch"}))["batch_id"]

    listed = await data_of(orch, "/batch/operations", view="summary")
    assert [b["batch_id"] for b in listed] == [second, first]
    resp = await orch.get("/batch/operations", params={"view": "summary"})
    assert resp.headers["X-Total-Count"] == "2"
    assert [t["name"] for t in await data_of(orch, "/tasks", limit=1)] == ["b1"]
    resp = await orch.get("/tasks", params={"limit": "1"})
    assert resp.headers["X-Total-Count"] == "3"
    # the cursor taken before the insert goes on where it was: nothing skipped or repeated
    assert [t["name"] for t in await data_of(orch, "/tasks", limit=5, cursor=cursor)] == ["a2"]
