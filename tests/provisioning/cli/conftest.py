"""One live ``provisioning up`` per test module that asks for it (see tests/helpers/live_server.py)."""

from tests.helpers.live_server import admin, logged_in, server  # noqa: F401  (fixtures)
