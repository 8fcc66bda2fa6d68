"""Typed application keys of the orchestrator."""

from __future__ import annotations

from aiohttp import web

from orchestrator.checkpoints import Checkpoints
from orchestrator.engine import Engine
from orchestrator.extensions.manager import ExtensionManager
from orchestrator.rollback import RollbackService
from orchestrator.state import StateService
from orchestrator.workflows import WorkflowService

ENGINE = web.AppKey("engine", Engine)
CHECKPOINTS = web.AppKey("checkpoints", Checkpoints)
ROLLBACKS = web.AppKey("rollbacks", RollbackService)
WORKFLOWS = web.AppKey("workflows", WorkflowService)
STATE = web.AppKey("state", StateService)
EXTENSIONS = web.AppKey("extensions", ExtensionManager)
