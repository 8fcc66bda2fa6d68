"""The web UI extension: the operator console's bundle, built by the console work into
``control_center/static/console/``; until it exists, ``/ext/webui/`` says so."""

from __future__ import annotations

from pathlib import Path

from orchestrator.extensions.builtin.webui import console_api
from orchestrator.extensions.context import ExtensionContext

ROOT = Path(__file__).resolve().parents[4]
CONSOLE = ROOT / "control_center" / "static" / "console"
SHOWN_AS = "control_center/static/console/"


class WebUI:
    def __init__(self, console: Path = CONSOLE) -> None:
        self.console = console

    def setup(self, context: ExtensionContext) -> None:
        assert context.routes is not None and context.static is not None  # granted by the manifest
        context.routes.include(console_api.build_api(self.console, SHOWN_AS))
        if (self.console / "index.html").is_file():
            context.static.serve(self.console, prefix="/", public=True)

    def health(self) -> dict[str, str]:
        installed = (self.console / "index.html").is_file()
        return {"console": "healthy" if installed else "not installed"}


def get_extension() -> WebUI:
    return WebUI()
