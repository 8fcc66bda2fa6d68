"""Task ids that say where their task is stored.

A task's row lives in a page of its workflow's tasks (``orchestrator/repository.py``,
``shared/store/pages.py``), found by the workflow's submission position and the
task's index. A task id is a UUID (RFC 9562 version 8, the layout of the
implementer's choosing) that carries both, so ``GET /tasks/{id}`` reads one page
and no index of ids is kept::

    bits 127..80  submission position (48 bits)
    bits  79..76  version 8
    bits  75..64  random
    bits  63..62  variant 0b10
    bits  61..56  random
    bits  55..32  index in the workflow (24 bits)
    bits  31..0   random

Any other id (one a client chose for a single-purpose workflow, or an id from
before pages) is found another way (``Repository.task_page_of``).
"""

from __future__ import annotations

import secrets
import uuid

_SEQ_BITS = 48
_INDEX_BITS = 24
MAX_INDEX = (1 << _INDEX_BITS) - 1
_MAX_SEQ = (1 << _SEQ_BITS) - 1
_RANDOM = (0xFFF << 64) | (0x3F << 56) | 0xFFFFFFFF
_VERSION = 8 << 76
_VARIANT = 0b10 << 62


def task_id(seq: int, index: int) -> str | None:
    """The id of the ``index``-th task of the workflow submitted at ``seq`` (``None``
    when either is beyond what an id can carry: use another kind of id)."""
    if not (0 <= seq <= _MAX_SEQ and 0 <= index <= MAX_INDEX):
        return None
    value = (seq << 80) | _VERSION | _VARIANT | (index << 32) | (secrets.randbits(128) & _RANDOM)
    return str(uuid.UUID(int=value))


_VARIANT_DIGIT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}  # 0b10 then two random bits


def task_ids(seq: int, count: int) -> list[str] | None:
    """The ids of tasks ``0..count-1`` of the workflow submitted at ``seq``, laid out as
    :func:`task_id` makes them, from one draw of randomness and written as text
    directly (a draw and a ``UUID`` each were a fifth of a 5,000-operation
    submission); ``None`` when they cannot carry ``seq`` or the indexes."""
    if not (0 <= seq <= _MAX_SEQ and count - 1 <= MAX_INDEX):
        return None
    rnd = secrets.token_hex(7 * count)  # 14 digits an id, of which it takes 13
    position = f"{seq:012x}"
    head = f"{position[:8]}-{position[8:]}-8"
    ids = []
    for index in range(count):
        r = rnd[14 * index : 14 * index + 13]
        at = f"{index:06x}"
        ids.append(f"{head}{r[:3]}-{_VARIANT_DIGIT[r[3]]}{r[4]}{at[:2]}-{at[2:]}{r[5:]}")
    return ids


def locate(task: str) -> tuple[int, int] | None:
    """The (submission position, index) a task id made by :func:`task_id` carries;
    ``None`` for any other string. Never trusted alone: the row found must hold this id."""
    if len(task) != 36:
        return None
    try:
        value = uuid.UUID(task)
    except ValueError:
        return None
    if value.version != 8 or value.variant != uuid.RFC_4122:
        return None
    number = value.int
    return number >> 80, (number >> 32) & MAX_INDEX
