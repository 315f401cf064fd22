"""Environment variables: GET answers `[{name, value}]` (Nango's shape); POST replaces the whole set.

Values are sealed at rest; script runs receive them through `nango.get_environment_variables()`.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control.environments import MAX_VARIABLES, EnvironmentVariable
from orchestrator.store import environment_variables as repo

routes = web.RouteTableDef()


class EnvironmentVariablesBody(BaseModel):
    """`{"variables": [{name, value}, ...]}`; a bare list is accepted too."""
    model_config = ConfigDict(extra="forbid")
    variables: list[EnvironmentVariable] = Field(max_length=MAX_VARIABLES)


class EnvironmentVariableList(RootModel[list[EnvironmentVariable]]):
    pass


@routes.get("/environment-variables")
async def list_variables(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        return json_response(await repo.list_all(conn, request.app[PLATFORM].sealer, environment(request).id))


@routes.post("/environment-variables")
async def replace_variables(request: web.Request) -> web.Response:
    raw = await json_body(request)
    variables = (EnvironmentVariableList.model_validate(raw).root if isinstance(raw, list)
                 else EnvironmentVariablesBody.model_validate(raw).variables)
    if len(variables) > MAX_VARIABLES:
        raise_error(400, "invalid_body", f"at most {MAX_VARIABLES} variables")
    names = [v.name for v in variables]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise_error(400, "invalid_body", f"duplicate variable name(s): {', '.join(dupes)}")
    env = environment(request)
    async with request.app[PLATFORM].pool.acquire() as conn, conn.transaction():
        await repo.replace(conn, request.app[PLATFORM].sealer, env.id, [(v.name, v.value) for v in variables])
        return json_response(await repo.list_all(conn, request.app[PLATFORM].sealer, env.id))
