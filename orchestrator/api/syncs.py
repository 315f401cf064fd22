"""Sync controls over HTTP (Nango's /sync/* wire format); the logic lives in orchestrator.control.syncs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control import syncs as sync_control

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

    def clears_cache(self) -> bool:
        """Nango's `opts.emptyCache` and `sync_mode: full_refresh_and_clear_cache`: the records go first."""
        return bool((self.opts and self.opts.emptyCache) or self.sync_mode == "full_refresh_and_clear_cache")

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
    return await sync_control.targets(request.app[PLATFORM], environment(request),
                                      body.provider_config_key, names, body.connection_id, variant)


@routes.post("/sync/trigger")
async def trigger(request: web.Request) -> web.Response:
    body = SyncsBody.model_validate(await json_body(request))
    items = await _resolve(request, body)
    done = await sync_control.trigger_each(request.app[PLATFORM], environment(request), items,
                                           full=body.is_full(), clear_cache=body.clears_cache())
    # Nango answers {success}; `triggered` says what became of the request for each connection and sync
    return json_response({"success": True, "triggered": [t.as_dict() for t in done]})


@routes.post("/sync/start")
async def start(request: web.Request) -> web.Response:
    body = SyncsBody.model_validate(await json_body(request))
    items = await _resolve(request, body)
    await sync_control.resume(request.app[PLATFORM], environment(request), items, "resumed through the API")
    return json_response({"success": True})


@routes.post("/sync/pause")
async def pause(request: web.Request) -> web.Response:
    body = SyncsBody.model_validate(await json_body(request))
    items = await _resolve(request, body)
    await sync_control.pause(request.app[PLATFORM], environment(request), items, "paused through the API")
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
    items = await sync_control.targets(request.app[PLATFORM], environment(request), integration,
                                       names, q.get("connection_id") or None, variant)
    rows = await sync_control.status(request.app[PLATFORM], environment(request), items)
    return json_response({"syncs": rows})


@routes.put("/sync/update-connection-frequency")
async def update_frequency(request: web.Request) -> web.Response:
    body = FrequencyBody.model_validate(await json_body(request))
    items = await sync_control.targets(request.app[PLATFORM], environment(request),
                                       body.provider_config_key, [body.sync_name], body.connection_id,
                                       body.sync_variant or "base")
    text = await sync_control.set_frequency(request.app[PLATFORM], environment(request), items,
                                            body.frequency)
    return json_response({"frequency": text})


class VariantBody(BaseModel):
    provider_config_key: str = Field(min_length=1)
    connection_id: str = Field(min_length=1)


async def _variant_target(request: web.Request) -> tuple[sync_control.Target, str]:
    body = VariantBody.model_validate(await json_body(request))
    name, variant = request.match_info["name"], request.match_info["variant"]
    if variant == "base" or not variant.strip() or len(variant) > 255:
        raise_error(400, "invalid_variant", "variant must be 1-255 characters and not 'base'")
    items = await sync_control.targets(request.app[PLATFORM], environment(request),
                                       body.provider_config_key, [name], body.connection_id, variant)
    return items[0], variant


@routes.post("/sync/{name}/variant/{variant}")
async def create_variant(request: web.Request) -> web.Response:
    target, variant = await _variant_target(request)
    await sync_control.create_variant(request.app[PLATFORM], target)
    return json_response({"id": f"{target.connection.id}:{target.script.name}:{variant}",
                          "name": target.script.name, "variant": variant})


@routes.delete("/sync/{name}/variant/{variant}")
async def delete_variant(request: web.Request) -> web.Response:
    target, _ = await _variant_target(request)
    await sync_control.delete_variant(request.app[PLATFORM], environment(request), target)
    return json_response({"success": True})
