"""The C library, for the few of its functions the services call through ``ctypes``
(glibc's ``mallopt`` and ``malloc_trim``, Linux's ``prctl``).

``ctypes.util.find_library("c")`` runs ``ldconfig -p`` in a subprocess (a fork of the
service, 15-30 ms of CPU each on the machine of docs/performance.md, and a start made
three). The C library is already loaded into every Python process: its functions are
looked up in the process itself (``dlopen(NULL)``) instead.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The process's own symbols, the C library's among them, with ``errno`` kept for
    ``ctypes.get_errno``; None where a process cannot look itself up. A function the
    platform's C library lacks raises ``AttributeError`` when looked up."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # TypeError: Windows takes no None
        return None


def function(name: str) -> Any:
    """The C library's function ``name``, or None where there is none (``malloc_trim``
    and ``mallopt`` are glibc's: not on musl or macOS)."""
    lib = libc()
    return None if lib is None else getattr(lib, name, None)
