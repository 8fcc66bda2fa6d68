"""Typed application keys of the orchestrator."""

from __future__ import annotations

from aiohttp import web

from orchestrator.checkpoints import Checkpoints
from orchestrator.engine import Engine
from orchestrator.rollback import RollbackService

ENGINE = web.AppKey("engine", Engine)
CHECKPOINTS = web.AppKey("checkpoints", Checkpoints)
ROLLBACKS = web.AppKey("rollbacks", RollbackService)
