"""Webhooks to the customer's app (sync results, auth events): signed as Nango signs them, retried on 5xx and
timeouts, sent through the egress policy, every attempt handed to the caller to record.

`X-Nango-Hmac-Sha256` is the hex HMAC-SHA256 of the body with the environment's webhook secret, which is what
`@nangohq/node`'s `verifyIncomingWebhookRequest` checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import orjson
import structlog

from orchestrator import metrics
from orchestrator.crypto import Sealer
from orchestrator.providers.egress import Egress, EgressRefused

log = structlog.get_logger(__name__)

ATTEMPTS = 4
BACKOFF_S = 1.0
TIMEOUT_S = 15.0  # per attempt

# called after each attempt with the answer's status (None: no answer) and the error, if any
Record = Callable[[int | None, str | None], Awaitable[None]]


_sending: set[asyncio.Task[None]] = set()


def in_background(work: Coroutine[Any, Any, None]) -> None:
    """Deliver without holding up the request or run that caused it (a reference is kept until it is done)."""
    task = asyncio.get_running_loop().create_task(work)
    _sending.add(task)
    task.add_done_callback(_sending.discard)


def destinations(env: dict[str, Any] | None, sealer: Sealer) -> tuple[list[str], str]:
    """The environment's webhook URLs (primary, then secondary; each once) and its opened signing secret."""
    if env is None:
        return [], ""
    urls = [u for u in dict.fromkeys((env["webhook_url"], env["webhook_url_secondary"])) if u]
    return urls, str(sealer.open(env["webhook_secret"])) if env["webhook_secret"] else ""


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(egress: Egress, url: str, secret: str, payload: dict[str, Any] | bytes, record: Record, *,
                  attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S, timeout_s: float = TIMEOUT_S,
                  headers: dict[str, str] | None = None, kind: str = "other", environment: str = "") -> bool:
    """POST one payload (JSON, or bytes sent as they are); True once a 2xx answered. 4xx and a refused URL end
    it; 5xx and timeouts are retried. `headers` are added to ours (a forwarded webhook's provider headers).
    The outcome is counted under `kind` (sync, auth, forward) and `environment` (its name)."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {**(headers or {}), "Content-Type": "application/json", "User-Agent": "nango-orchestrator"}
    if secret:
        headers["X-Nango-Hmac-Sha256"] = sign(secret, body)
    for attempt in range(1, attempts + 1):
        status: int | None = None
        error: str | None = None
        refused = False
        try:
            async with egress.post_outbound(url, data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                status = resp.status
        except EgressRefused as exc:
            refused, error = True, str(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        await record(status, error)
        if refused:  # the environment's webhook URL points inside: no retry can fix that
            log.warning("webhook_delivery_refused", error=error)
            metrics.WEBHOOK_DELIVERIES.labels(environment, kind, "refused").inc()
            return False
        if status is not None and status < 500:
            metrics.WEBHOOK_DELIVERIES.labels(environment, kind, "delivered" if status < 300 else "failed").inc()
            return status < 300
        if attempt < attempts:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    log.warning("webhook_delivery_failed", url=url.split("?")[0])
    metrics.WEBHOOK_DELIVERIES.labels(environment, kind, "failed").inc()
    return False
