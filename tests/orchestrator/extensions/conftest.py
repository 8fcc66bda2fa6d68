"""Both services on one real store, real HTTP (see tests/helpers/services.py)."""

from tests.helpers.services import (  # noqa: F401  (fixtures)
    no_secrets_in_logs,
    secrets,
    services,
    settings_overrides,
    shared_store,
)
