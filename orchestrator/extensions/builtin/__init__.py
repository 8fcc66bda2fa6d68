"""The built-in extensions: one package each, with ``extension.json`` and ``extension.py``."""
