"""Switching deployed syncs and actions on and off (orchestrator.control.scripts does the work).

`GET /scripts` lists them with their switch; `PATCH /scripts/{integration}/{name}` with
`{"enabled": false}` disables one (its schedules are paused then removed, its endpoint answers
404), `{"enabled": true}` enables it again. `kind` (sync|action) is needed only when a sync and an
action share a name.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.keys import PLATFORM
from orchestrator.control import scripts as scripts_control

routes = web.RouteTableDef()


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    kind: Literal["sync", "action"] | None = None


@routes.get("/scripts")
async def list_scripts(request: web.Request) -> web.Response:
    integration = request.query.get("provider_config_key") or None
    rows = await scripts_control.list_scripts(request.app[PLATFORM].pool, environment(request), integration)
    return json_response({"scripts": rows})


@routes.patch("/scripts/{integration}/{name}")
async def switch_script(request: web.Request) -> web.Response:
    body = SwitchBody.model_validate(await json_body(request))
    app = request.app
    result = await scripts_control.switch(
        app[PLATFORM], environment(request), request.match_info["integration"],
        request.match_info["name"], body.enabled, body.kind)
    return json_response(result.as_dict())
