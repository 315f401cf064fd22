"""The caller's environment settings: where sync results are sent and how they are signed, and its
secret key (rotated with a grace period during which the previous key keeps working)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.keys import PLATFORM
from orchestrator.control import environments as environments_service
from orchestrator.store import environments as environments_repo
from orchestrator.store.types import RecordValidation, ScriptLogLevel

routes = web.RouteTableDef()

URL_PATTERN = r"^(https?://.+)?$"


class EnvironmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str | None = Field(None, pattern=URL_PATTERN, max_length=2048)
    webhook_url_secondary: str | None = Field(None, pattern=URL_PATTERN, max_length=2048,
                                              description="a second URL that gets every webhook too")
    webhook_secret: str | None = None
    records_retention_days: int | None = Field(None, ge=1, le=36500, description="records deleted (soft-deleted "
                                               "by a sync) more than this many days ago are removed; null keeps "
                                               "them forever")
    jobs_retention_days: int | None = Field(None, ge=1, le=36500, description="finished jobs (runs) started "
                                            "more than this many days ago are removed with their logs; null "
                                            "keeps them forever")
    webhooks_retention_days: int | None = Field(None, ge=1, le=36500, description="stored provider webhook "
                                                "payloads received more than this many days ago are removed; "
                                                "null keeps them forever")
    notify_on_empty: bool | None = None
    on_auth_creation: bool | None = Field(None, description="auth webhooks when a connection is created, has its "
                                          "credentials replaced (success or failure) or is deleted")
    on_auth_refresh_error: bool | None = Field(None, description="an auth webhook when a token refresh is refused")
    alert_after_failures: int | None = Field(None, ge=0, le=1000, description="a sync that fails this many runs in "
                                             "a row sends one failing webhook, then one recovered webhook when it "
                                             "next succeeds (default 3; 0 turns alerts off)")
    script_log_level: ScriptLogLevel | None = Field(None, description="the lowest level of a script's log lines "
                                                    "kept: debug (everything, the default), info, warn or error")
    record_validation: RecordValidation | None = Field(None, description="records checked against their model "
                                                       "when a script saves them: off (the default), warn (saved "
                                                       "and reported in the run's log) or reject (not saved, "
                                                       "reported)")


class RotateOwnKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_period_s: float | None = Field(None, ge=0, description="how long the current key keeps working "
                                         "(default: SECRET_KEY_GRACE_S)")


@routes.get("/environment")
async def get_environment(request: web.Request) -> web.Response:
    env = environment(request)
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await environments_repo.webhook_settings(conn, env.id)
        days = await environments_repo.retention(conn, env.id)
        current = await environments_repo.by_id(conn, env.id)
    return json_response({"name": row["name"], "webhook_url": row["webhook_url"],
                          "webhook_url_secondary": row["webhook_url_secondary"],
                          "has_webhook_secret": row["has_secret"], "notify_on_empty": row["notify_on_empty"],
                          "on_auth_creation": row["on_auth_creation"],
                          "on_auth_refresh_error": row["on_auth_refresh_error"],
                          "alert_after_failures": row["alert_after_failures"],
                          "secret_key_rotated_at": row["secret_key_rotated_at"],
                          "previous_key_expires_at": row["previous_key_expires_at"], **days,
                          "script_log_level": current.script_log_level if current else "debug",
                          "record_validation": current.record_validation if current else "off"})


@routes.patch("/environment")
async def patch_environment(request: web.Request) -> web.Response:
    body = EnvironmentBody.model_validate(await json_body(request))
    env = environment(request)
    given = body.model_fields_set
    async with request.app[PLATFORM].pool.acquire() as conn:
        await environments_repo.update_webhook_settings(
            conn, env.id, set_url="webhook_url" in given, url=body.webhook_url,
            sealed_secret=request.app[PLATFORM].sealer.seal(body.webhook_secret) if body.webhook_secret else None,
            notify_on_empty=body.notify_on_empty, set_secondary="webhook_url_secondary" in given,
            secondary_url=body.webhook_url_secondary, on_auth_creation=body.on_auth_creation,
            on_auth_refresh_error=body.on_auth_refresh_error, alert_after_failures=body.alert_after_failures)
        await environments_repo.set_script_settings(conn, env.id, script_log_level=body.script_log_level,
                                                    record_validation=body.record_validation)
    if retention := {k: getattr(body, k) for k in environments_repo.RETENTION if k in given}:
        async with request.app[PLATFORM].pool.acquire() as conn:
            await environments_repo.set_retention(conn, env.id, retention)
    return await get_environment(request)


@routes.post("/environment/rotate-key")
async def rotate_own_key(request: web.Request) -> web.Response:
    """A new secret key for the caller's environment; the key used for this call keeps working for the
    grace period (0 ends it now)."""
    body = RotateOwnKeyBody.model_validate(await json_body(request))
    seconds = body.grace_period_s
    if seconds is None:
        seconds = request.app[PLATFORM].settings.secret_key_grace_s
    grace = environments_service.check_grace(seconds)
    rotated = await environments_service.rotate_key(request.app[PLATFORM].pool, environment(request).name, grace)
    return json_response(rotated.as_dict())
