"""POST /webhook/{environment}/{integration}: provider webhooks, stored before the 200.

Once stored, a payload is answered 200 even when its workflow cannot start yet (Temporal unreachable): the
maintenance loop starts it (`control/maintenance.redispatch_webhooks`), and an error would make the provider
send it again, to be run twice."""

from __future__ import annotations

import structlog
from aiohttp import web

from orchestrator.api.common import json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control.webhooks import SignatureError, store
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.temporal.starter import start_webhook
from orchestrator.temporal.types import WebhookInput

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
MAX_BODY = 10 * 1024 * 1024


@routes.post("/webhook/{environment}/{integration}")
async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    if len(body) > MAX_BODY:
        raise_error(413, "payload_too_large", f"webhook payload over {MAX_BODY} bytes")
    async with request.app[PLATFORM].pool.acquire() as conn:
        env = await environments_repo.by_name(conn, request.match_info["environment"])
        integration = await integrations_repo.get(conn, env.id, request.match_info["integration"]) if env else None
        if env is None or integration is None:
            raise_error(404, "unknown_provider_config", "no such environment or integration for this webhook URL")
        try:
            headers = {str(k): v for k, v in request.headers.items()}
            payload_id, public_id = await store(conn, request.app[PLATFORM].sealer, integration, headers, body)
        except SignatureError as exc:
            raise_error(401, exc.code, exc.message)
    try:
        await start_webhook(request.app[PLATFORM], WebhookInput(env.id, env.name, integration.unique_key,
                                                                payload_id), public_id=public_id)
    except Exception as exc:  # stored: the maintenance loop starts it; an error would make the provider resend it
        log.warning("webhook_dispatch_deferred", integration=integration.unique_key, payload=public_id,
                    error=f"{type(exc).__name__}: {exc}")
    return json_response({"success": True, "id": public_id})
