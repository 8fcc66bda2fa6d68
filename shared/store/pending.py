"""What the store's writer queues and keeps between commits: the writes queued
together and who is told when they land (:class:`Pending`), a row's lazy changes not
yet applied (:class:`LazyRow`), and rows planned for application (:class:`Applying`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.store.page_cache import PageKey, PageRows
from shared.store.pages import Codes
from shared.store.writes import Write

log = logging.getLogger("shared.store.store")  # a callback's failure is the writer's to report

# Told once queued writes are durable (None) or failed (the error); see Store.notify.
Done = Callable[[BaseException | None], None]


@dataclass(slots=True)
class Pending:
    """Writes queued together, and who is told when they land: a future, or a callback."""

    stmts: tuple[Write, ...]
    future: asyncio.Future[list[Any]] | None
    flush: bool = False  # apply every lazy change with this commit
    done: Done | None = None

    def fail(self, exc: BaseException) -> None:
        if self.done is not None:
            done, self.done = self.done, None
            tell(done, exc)
        elif self.future is not None and not self.future.done():
            self.future.set_exception(exc)

    def succeed(self, results: list[Any]) -> None:
        if self.done is not None:
            done, self.done = self.done, None
            tell(done, None)
        elif self.future is not None and not self.future.done():
            self.future.set_result(results)


def tell(done: Done, exc: BaseException | None) -> None:
    try:
        done(exc)
    except Exception:  # a callback's bug must not stop the writer
        log.exception("a write's completion callback failed")


@dataclass(slots=True)
class LazyRow:
    create: bool
    patch: dict[str, Any]
    first_mark: int
    last_mark: int
    since: float  # loop time of its oldest pending change
    page: str | None = None  # the page holding the row, in a paged table


@dataclass(slots=True)
class Applying:
    """Lazy rows planned for application: their pages as they will be, and the mark."""

    keys: list[tuple[str, str]]
    pages: dict[PageKey, PageRows]
    codes: dict[PageKey, Codes]
    mark: int
