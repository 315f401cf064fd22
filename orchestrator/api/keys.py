"""Typed app and request keys (aiohttp AppKey / RequestKey)."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp import web
from temporalio.client import Client

from orchestrator.bundles.store import BundleStore
from orchestrator.config.settings import Settings
from orchestrator.crypto import Sealer
from orchestrator.store.types import Environment

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
SEALER = web.AppKey("sealer", Sealer)
TEMPORAL = web.AppKey("temporal", Client)
BUNDLES = web.AppKey("bundles", BundleStore)  # type: ignore[type-abstract]
HTTP = web.AppKey("http", aiohttp.ClientSession)
ENVIRONMENT = web.RequestKey("environment", Environment)
