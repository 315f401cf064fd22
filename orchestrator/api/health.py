"""Health: liveness answers while the process serves; readiness checks PostgreSQL only (a Temporal blip
must not take every API pod out of the Service: most routes still answer); /health reports both."""

from __future__ import annotations

import asyncio

from aiohttp import web

from orchestrator.api.common import json_response
from orchestrator.api.keys import PLATFORM
from orchestrator.store.pool import ping

routes = web.RouteTableDef()


async def _postgres(request: web.Request) -> str:
    try:
        async with asyncio.timeout(3):
            await ping(request.app[PLATFORM].pool)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    checks: dict[str, str] = {"postgres": await _postgres(request)}
    try:
        async with asyncio.timeout(3):
            await request.app[PLATFORM].temporal.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)


@routes.get("/health/live")
async def live(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    """The readiness probe: PostgreSQL only, so Temporal's state never empties the Service."""
    checks = {"postgres": await _postgres(request)}
    ok = checks["postgres"] == "ok"
    return json_response({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)
