"""Integrations: the provider config keys of an environment."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.api.common import environment, json_response
from orchestrator.api.keys import POOL
from orchestrator.providers.catalog import builtin_providers
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import Integration

routes = web.RouteTableDef()


def public(i: Integration) -> dict[str, Any]:
    provider = builtin_providers().get(i.provider)
    return {"unique_key": i.unique_key, "provider": i.provider,
            "display_name": i.display_name or (provider.display_name if provider else i.provider),
            "logo": "", "forward_webhooks": True, "created_at": i.created_at.isoformat(),
            "updated_at": i.updated_at.isoformat()}


@routes.get("/integrations")
async def list_integrations(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        found = await integrations_repo.list_all(conn, environment(request).id)
    return json_response({"data": [public(i) for i in found]})
