"""How many records the embedded engine reads per step of a scan.

Measured on the engine the ``surrealdb`` wheel embeds (SurrealDB 2.3, surrealkv 0.9;
docs/performance.md, "Lists at 1,000,000 tasks, round 2"): a range or index scan reads
its keys *and values* in batches of ``SURREAL_NORMAL_FETCH_SIZE`` (500 unless set),
and a ``LIMIT`` stops it only between batches. So ``SELECT … FROM task_page:⟨x⟩..
LIMIT 1`` read 500 pages of 100 rows to return one: 2.6-3.8 ms at 1,000,000 tasks
against 0.7 ms at 10,000 (where the whole table is 100 pages) — a list page that grew
with history. At 100 the same read costs 0.6-0.7 ms at either size, a page of 51
workflows through their list index 2.1 ms instead of 4.1, and a scan of a whole
table (10,000 pages, 10,000 workflows) costs what it did (within 5 %).

Like ``SURREAL_SYNC_DATA`` (``shared/store/durability.py``), the engine reads the
variable once per process, at its first scan: it is set before the first store opens
and never changed after; a value already in the environment wins.

A hazard this makes easier to meet (the engine's, at any step size): an ``UPDATE …
WHERE`` that scans an index and moves the rows it changes forward in that index (``SET
seq = seq + 1000 WHERE seq > 500``) meets them again at a later step and never ends,
its memory growing. Such a change is made by record ids read first (``UPDATE $ids``);
the product's own updates name one record each.
"""

from __future__ import annotations

import os

FETCH_SIZE_VARIABLE = "SURREAL_NORMAL_FETCH_SIZE"


def apply_fetch_size(records: int) -> None:
    """Ask the engine to read ``records`` per scan step (0: the engine's own default)."""
    if records > 0:
        os.environ.setdefault(FETCH_SIZE_VARIABLE, str(int(records)))
