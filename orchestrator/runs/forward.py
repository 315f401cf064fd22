"""Forward webhooks: a provider webhook also goes to the environment's webhook URLs, as Nango forwards it.

One `{"from": <provider>, "type": "forward", "providerConfigKey", "connectionId", "payload"}` POST per connection
the payload was routed to; when it matched none, the provider's payload itself, as Nango sends it, but only when
the integration checked the provider's signature: an unsigned payload (`webhook_accept_unsigned`) is anybody's,
and sent as it came under our signature it could pass for one of our own webhooks (`{"type": "auth", ...}`), so
it goes in the envelope, without a connectionId. The provider's headers go along,
but never its credentials or what describes the original request (host, authorization, cookie, content-*,
user-agent, sec-*, proxy-*, referer, server); the body is signed like every webhook we send (webhooks_out.py).
Forwarding happens once, when the payload is first routed, in the background (it never delays the webhook
scripts), unless the integration's `forward_webhooks` is off; each attempt is kept on the payload's row.
"""

from __future__ import annotations

from typing import Any

import structlog

from orchestrator import webhooks_out
from orchestrator.providers.egress import strict_egress
from orchestrator.runs.deps import RunDeps
from orchestrator.store import environments as environments_repo
from orchestrator.store import webhooks as webhooks_repo
from orchestrator.timestamps import now_iso

log = structlog.get_logger(__name__)

DROPPED = frozenset({"host", "authorization", "cookie", "user-agent", "referer", "server", "x-nango-hmac-sha256",
                     "x-nango-signature"})
DROPPED_PREFIXES = ("content-", "sec-", "proxy-")


def forwarded_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items()
            if k.lower() not in DROPPED and not k.lower().startswith(DROPPED_PREFIXES)}


def payloads(provider: str, integration: str, body: Any, raw: bytes, connection_ids: list[str], *,
             signed: bool) -> list[tuple[str | None, dict[str, Any] | bytes]]:
    envelope = {"from": provider, "type": "forward", "providerConfigKey": integration}
    if not connection_ids:
        return [(None, raw if signed else {**envelope, "payload": body})]
    return [(cid, {**envelope, "connectionId": cid, "payload": body}) for cid in connection_ids]


def forward(deps: RunDeps, environment_id: int, payload_id: int, row: dict[str, Any], body: Any,
            connection_ids: list[str]) -> None:
    """Start forwarding in the background."""
    webhooks_out.in_background(_forward(deps, environment_id, payload_id, row, body, connection_ids))


async def _forward(deps: RunDeps, environment_id: int, payload_id: int, row: dict[str, Any], body: Any,
                   connection_ids: list[str]) -> None:
    try:
        async with deps.pool.acquire() as conn:
            env = await environments_repo.webhook_settings(conn, environment_id)
        urls, secret = webhooks_out.destinations(env, deps.sealer)
        if not urls:
            return
        headers = forwarded_headers(row["headers"] or {})
        for cid, payload in payloads(row["provider"], row["unique_key"], body, bytes(row["body"]), connection_ids,
                                     signed=bool(row.get("signed"))):
            for url in urls:
                async def record(status: int | None, error: str | None, url: str = url,
                                 cid: str | None = cid) -> None:
                    async with deps.pool.acquire() as conn:
                        await webhooks_repo.add_forward_attempt(conn, payload_id, {
                            "url": url, "connection_id": cid, "status": status, "error": error,
                            "at": now_iso()})
                await webhooks_out.deliver(deps.egress or strict_egress(), url, secret, payload, record,
                                           attempts=webhooks_out.ATTEMPTS, backoff_s=webhooks_out.BACKOFF_S,
                                           timeout_s=webhooks_out.TIMEOUT_S, headers=headers, kind="forward",
                                           environment=env["name"] if env else "")
    except Exception as exc:  # a database outage: the forward is lost, which the log says
        log.warning("webhook_forward_failed", payload=payload_id, error=f"{type(exc).__name__}: {exc}")
