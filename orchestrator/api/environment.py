"""The caller's environment settings: where sync results are sent and how they are signed."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.keys import POOL, SEALER

routes = web.RouteTableDef()


class EnvironmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str | None = Field(None, pattern=r"^(https?://.+)?$")
    webhook_secret: str | None = None
    notify_on_empty: bool | None = None


@routes.get("/environment")
async def get_environment(request: web.Request) -> web.Response:
    env = environment(request)
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow("SELECT name, webhook_url, webhook_secret IS NOT NULL AS has_secret,"
                                  " notify_on_empty FROM environments WHERE id = $1", env.id)
    return json_response({"name": row["name"], "webhook_url": row["webhook_url"],
                          "has_webhook_secret": row["has_secret"], "notify_on_empty": row["notify_on_empty"]})


@routes.patch("/environment")
async def patch_environment(request: web.Request) -> web.Response:
    body = EnvironmentBody.model_validate(await json_body(request))
    env = environment(request)
    async with request.app[POOL].acquire() as conn:
        await conn.execute(
            "UPDATE environments SET webhook_url = CASE WHEN $2 THEN NULLIF($3, '') ELSE webhook_url END,"
            " webhook_secret = COALESCE($4, webhook_secret), notify_on_empty = COALESCE($5, notify_on_empty)"
            " WHERE id = $1", env.id, "webhook_url" in body.model_fields_set, body.webhook_url,
            request.app[SEALER].seal(body.webhook_secret) if body.webhook_secret else None, body.notify_on_empty)
    return await get_environment(request)
