"""What a service's start leaves for later: modules it imports but never uses, and the
certificate authorities of TLS contexts made at import.

``provisioning up`` imports every module of both services before it serves; some of
that is work the services never need, or need only later:

* the ``surrealdb`` package imports ``requests`` (with ``urllib3`` and
  ``charset_normalizer``) for its remote HTTP connection; the embedded store never
  opens one. :func:`defer_import` leaves a stand-in that imports the module at its
  first use.
* ``jwt`` (with ``cryptography.x509``, whose import compiles a large regular
  expression) signs and checks tokens: the first login or authenticated request
  needs it, a start (``/health``, resuming batches) does not; ``segno`` draws the
  QR code of an MFA enrolment. Both are imported by our modules as ``import x``
  and used by attribute, so the stand-in loads them at that first use.
* ``aiohttp`` makes two TLS client contexts when it is imported, and loads the
  system's certificate authorities into each (~45 ms of CPU apiece); only an
  outgoing HTTPS request (a webhook delivery, say) uses them.
  :func:`certificates_at_first_use` has the contexts made meanwhile load them when
  they first wrap a connection.

Neither changes what a module does once used; the tests check both.

And it sets glibc's malloc for the service's own memory (:func:`tune_malloc`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import ssl
import sys
import types
from collections.abc import Iterator
from typing import Any

from shared.libc import function

# Imported by the ``surrealdb`` package for its remote (HTTP) connection only; by
# shared/security/tokens.py (tokens: the first login or authenticated request) and
# control_center/mfa.py (an MFA enrolment's QR code). Measured: docs/performance.md,
# "Start-up and memory, round 3".
DEFERRED_MODULES = ("requests", "jwt", "segno")


def lean_imports() -> None:
    """Before the services' modules are imported: defer what they import but do not use,
    and import ``aiohttp`` with its TLS contexts' certificates loaded at first use."""
    for name in DEFERRED_MODULES:
        defer_import(name)
    if "aiohttp" not in sys.modules:
        with certificates_at_first_use():
            importlib.import_module("aiohttp")


def defer_import(name: str) -> None:
    """Put a stand-in for module ``name`` in ``sys.modules`` that imports the module at
    its first use (any attribute but the import system's own): ``import name`` then
    costs nothing. (:class:`importlib.util.LazyLoader` loads at the ``import``
    statement itself on Python 3.11: the import system reads the module's spec.)"""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    sys.modules[name] = _Deferred(name)


class _Deferred(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__spec__ = None  # what the import system reads of a module already imported
        self._module: types.ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            module = self._module = importlib.import_module(self.__name__)
        return getattr(module, attr)


@contextlib.contextmanager
def certificates_at_first_use() -> Iterator[list[ssl.SSLContext]]:
    """While inside: an ``SSLContext`` asked to load the default certificate authorities
    (``set_default_verify_paths``, which ``create_default_context`` calls) does it when
    it first wraps a connection instead. Yields the contexts so made."""
    pending: list[ssl.SSLContext] = []

    def later(context: ssl.SSLContext) -> None:
        pending.append(context)

    ssl.SSLContext.set_default_verify_paths = later  # type: ignore[method-assign,assignment]
    try:
        yield pending
    finally:
        del ssl.SSLContext.set_default_verify_paths  # the inherited method again
        for context in pending:
            if type(context) is ssl.SSLContext:
                context.__class__ = _CertificatesAtFirstUse


class _CertificatesAtFirstUse(ssl.SSLContext):
    """A context whose default certificate authorities are loaded when it first wraps a
    connection (it then is a plain ``ssl.SSLContext`` again)."""

    def _load(self) -> None:
        self.__class__ = ssl.SSLContext  # type: ignore[assignment]
        self.set_default_verify_paths()

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load()
        return self.wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load()
        return self.wrap_socket(*args, **kwargs)

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        self._load()
        return self.get_ca_certs(binary_form)

    def cert_store_stats(self) -> dict[str, int]:
        self._load()
        return self.cert_store_stats()


# glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(arena_max: int, mmap_threshold_kib: int) -> dict[str, bool]:
    """Before the service's threads start: at most ``arena_max`` malloc heaps, and blocks
    of ``mmap_threshold_kib`` KiB and more in mappings of their own (0 leaves either as
    glibc has it). Measured on the throughput runs (docs/performance.md): the peak RSS
    10-20 MB lower. Returns what was set ({} off glibc)."""
    mallopt = function("mallopt")
    if mallopt is None:
        return {}
    done = {}
    if arena_max:
        done["arena_max"] = bool(mallopt(M_ARENA_MAX, arena_max))
    if mmap_threshold_kib:
        done["mmap_threshold"] = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold_kib * 1024))
    return done
