"""Sync controls over HTTP (Nango's /sync/* wire format); the logic lives in orchestrator.sync_control."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import sync_control
from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import POOL, SEALER, TEMPORAL

routes = web.RouteTableDef()


class TriggerOpts(BaseModel):
    model_config = ConfigDict(extra="allow")
    reset: bool = False
    emptyCache: bool = False


class SyncsBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    syncs: list[Any] | str = Field(default_factory=list)
    provider_config_key: str = Field(min_length=1)
    connection_id: str | None = None
    opts: TriggerOpts | None = None
    sync_mode: str | None = None
    full_resync: bool | None = None

    def is_full(self) -> bool:
        if self.opts and self.opts.reset:
            return True
        if self.full_resync:
            return True
        return bool(self.sync_mode and self.sync_mode.startswith("full_refresh"))


class FrequencyBody(BaseModel):
    sync_name: str = Field(min_length=1)
    sync_variant: str | None = None
    provider_config_key: str = Field(min_length=1)
    connection_id: str = Field(min_length=1)
    frequency: str | None


async def _resolve(request: web.Request, body: SyncsBody) -> list[sync_control.Target]:
    names, variant = sync_control.parse_syncs(body.syncs)
    return await sync_control.targets(request.app[POOL], request.app[SEALER], environment(request),
                                      body.provider_config_key, names, body.connection_id, variant)


@routes.post("/sync/trigger")
async def trigger(request: web.Request) -> web.Response:
    body = SyncsBody.model_validate(await json_body(request))
    items = await _resolve(request, body)
    await sync_control.trigger(request.app[POOL], request.app[TEMPORAL], environment(request), items,
                               full=body.is_full())
    return json_response({"success": True})


@routes.post("/sync/start")
async def start(request: web.Request) -> web.Response:
    body = SyncsBody.model_validate(await json_body(request))
    items = await _resolve(request, body)
    await sync_control.resume(request.app[TEMPORAL], environment(request), items, "resumed through the API")
    return json_response({"success": True})


@routes.post("/sync/pause")
async def pause(request: web.Request) -> web.Response:
    body = SyncsBody.model_validate(await json_body(request))
    items = await _resolve(request, body)
    await sync_control.pause(request.app[TEMPORAL], environment(request), items, "paused through the API")
    return json_response({"success": True})


@routes.get("/sync/status")
async def status(request: web.Request) -> web.Response:
    q = request.query
    integration = q.get("provider_config_key", "").strip()
    if not integration:
        raise_error(400, "invalid_query_params", "provider_config_key is required")
    raw = q.get("syncs", "").strip()
    if not raw:
        raise_error(400, "invalid_query_params", "syncs is required (comma-separated names, or *)")
    names, variant = sync_control.parse_syncs([s for s in raw.split(",") if s])
    items = await sync_control.targets(request.app[POOL], request.app[SEALER], environment(request), integration,
                                       names, q.get("connection_id") or None, variant)
    return json_response({"syncs": await sync_control.status(request.app[POOL], request.app[TEMPORAL],
                                                             environment(request), items)})


@routes.put("/sync/update-connection-frequency")
async def update_frequency(request: web.Request) -> web.Response:
    body = FrequencyBody.model_validate(await json_body(request))
    items = await sync_control.targets(request.app[POOL], request.app[SEALER], environment(request),
                                       body.provider_config_key, [body.sync_name], body.connection_id,
                                       body.sync_variant or "base")
    text = await sync_control.set_frequency(request.app[POOL], request.app[TEMPORAL], environment(request), items,
                                            body.frequency)
    return json_response({"frequency": text})
