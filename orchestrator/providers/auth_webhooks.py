"""Auth webhooks, Nango's `type: "auth"` payloads: a connection created or its credentials replaced (success or
failure), a token refresh the provider refused, a connection deleted (our addition: Nango sends none for it).

Sent to the environment's webhook URLs, signed like sync results (webhooks_out.py), when the environment's
`on_auth_creation` (creation, override, deletion) or `on_auth_refresh_error` (refresh) is on. They go out in the
background: a webhook never delays nor fails the request or the run that caused it. Every attempt is recorded
(`auth_webhook_attempts`, shown on the dashboard's webhooks page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog

from orchestrator import webhooks_out
from orchestrator.platform import Platform
from orchestrator.providers.egress import strict_egress
from orchestrator.store import environments as environments_repo
from orchestrator.store import notifications as notifications_repo

log = structlog.get_logger(__name__)

Operation = Literal["creation", "override", "refresh", "deletion"]


@dataclass(frozen=True)
class AuthEvent:
    environment_id: int
    integration: str
    provider: str
    connection_id: str
    auth_mode: str
    operation: Operation
    success: bool
    error_type: str | None = None
    error: str | None = None

    def payload(self, environment: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "from": "nango", "type": "auth", "connectionId": self.connection_id,
            "providerConfigKey": self.integration, "authMode": self.auth_mode, "provider": self.provider,
            "environment": environment, "operation": self.operation, "success": self.success}
        if not self.success:
            body["error"] = {"type": self.error_type or "unknown_error", "description": self.error or ""}
        return body


async def send(platform: Platform, event: AuthEvent) -> None:
    """Decide now, from the environment's switches as they are when the event happens, and deliver in the
    background."""
    try:
        async with platform.pool.acquire() as conn:
            env = await environments_repo.webhook_settings(conn, event.environment_id)
    except Exception as exc:  # a database outage: the event is lost, which the log says
        log.warning("auth_webhook_not_sent", connection=event.connection_id, operation=event.operation,
                    error=f"{type(exc).__name__}: {exc}")
        return
    if env is None or not env["on_auth_refresh_error" if event.operation == "refresh" else "on_auth_creation"]:
        return
    urls, secret = webhooks_out.destinations(env, platform.sealer)
    if urls:
        webhooks_out.in_background(_deliver(platform, event, event.payload(env["name"]), urls, secret))


async def _deliver(platform: Platform, event: AuthEvent, payload: dict[str, Any], urls: list[str],
                   secret: str) -> None:
    try:
        for url in urls:
            async def record(status: int | None, error: str | None, url: str = url) -> None:
                async with platform.pool.acquire() as conn:
                    await notifications_repo.add_auth_attempt(
                        conn, event.environment_id, integration=event.integration, connection_id=event.connection_id,
                        operation=event.operation, success=event.success, url=url, status=status, error=error)
            await webhooks_out.deliver(platform.egress or strict_egress(), url, secret, payload, record,
                                       attempts=webhooks_out.ATTEMPTS, backoff_s=webhooks_out.BACKOFF_S,
                                       timeout_s=webhooks_out.TIMEOUT_S, kind="auth",
                                       environment=payload["environment"])
    except Exception as exc:  # a database outage while recording: the rest is lost, which the log says
        log.warning("auth_webhook_not_sent", connection=event.connection_id, operation=event.operation,
                    error=f"{type(exc).__name__}: {exc}")
