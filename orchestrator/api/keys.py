"""Typed app and request keys (aiohttp AppKey / RequestKey)."""

from __future__ import annotations

from aiohttp import web

from orchestrator.platform import Platform
from orchestrator.store.types import Environment

PLATFORM = web.AppKey("platform", Platform)  # set on startup, in create_app's cleanup context
ENVIRONMENT = web.RequestKey("environment", Environment)
