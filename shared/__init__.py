"""The library both services import: settings, store, HTTP conventions, events."""
