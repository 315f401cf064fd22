"""The admin API: create, list and delete environments, rotate their secret keys.

Authorized by `Authorization: Bearer <ADMIN_SECRET_KEY>` (not an environment's key); with
ADMIN_SECRET_KEY empty these routes answer 404. The auth middleware leaves `/admin/` to us.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.common import json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control import environments as service

routes = web.RouteTableDef()


class CreateEnvironmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)


class RotateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_period_s: float | None = Field(None, ge=0, description="how long the previous key keeps working "
                                         "(default: SECRET_KEY_GRACE_S)")


def _authorize(request: web.Request) -> None:
    admin_key = request.app[PLATFORM].settings.admin_secret_key.get_secret_value()
    if not admin_key:
        raise_error(404, "admin_api_disabled", "the admin API is disabled: set ADMIN_SECRET_KEY on the server")
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise_error(401, "missing_auth_header", "Authentication failed: send 'Authorization: Bearer <admin key>'")
    if not hmac.compare_digest(key.strip().encode(errors="surrogateescape"), admin_key.encode()):
        raise_error(401, "unknown_account", "Authentication failed: the admin key is not valid")


def _flag(raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value not in ("", "true", "false", "1", "0"):
        raise_error(400, "invalid_query_params", f"force must be true or false, got {raw!r}")
    return value in ("true", "1")


@routes.get("/admin/environments")
async def list_environments(request: web.Request) -> web.Response:
    _authorize(request)
    rows = await service.list_all(request.app[PLATFORM].pool)
    return json_response({"environments": rows})


@routes.post("/admin/environments")
async def create_environment(request: web.Request) -> web.Response:
    _authorize(request)
    body = CreateEnvironmentBody.model_validate(await json_body(request))
    try:
        env, key = await service.create(request.app[PLATFORM].pool, body.name)
    except service.EnvironmentExistsError as exc:
        raise_error(409, exc.code, exc.message)
    return json_response({"id": env.id, "name": env.name, "secret_key": key}, status=201)


@routes.delete("/admin/environments/{name}")
async def delete_environment(request: web.Request) -> web.Response:
    _authorize(request)
    force = _flag(request.query.get("force"))
    try:
        result = await service.delete(request.app[PLATFORM], request.match_info["name"],
                                      force=force)
    except service.EnvironmentNotEmptyError as exc:
        raise_error(409, exc.code, exc.message)
    return json_response(result)


@routes.post("/admin/environments/{name}/rotate-key")
async def rotate_key(request: web.Request) -> web.Response:
    _authorize(request)
    body = RotateKeyBody.model_validate(await json_body(request))
    seconds = body.grace_period_s
    if seconds is None:
        seconds = request.app[PLATFORM].settings.secret_key_grace_s
    rotated = await service.rotate_key(request.app[PLATFORM].pool, request.match_info["name"],
                                       service.check_grace(seconds))
    return json_response(rotated.as_dict())
