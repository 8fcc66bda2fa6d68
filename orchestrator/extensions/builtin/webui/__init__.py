"""The operator console at ``/ext/webui/``."""
