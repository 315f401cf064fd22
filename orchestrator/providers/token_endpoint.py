"""One call to a provider's token endpoint, and what its answer means.

Shared by every mode the platform mints tokens for (OAUTH2_CC, APP, JWT exchanged at a token URL): the URL
passes the egress policy, an unreachable endpoint, a 5xx or a 429 is transient (retried later, nothing marked),
and an answer that is not a token (HTML, an error object, no token field) is a refusal naming what came back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson

from orchestrator.errors import OrchestratorError, TransientError
from orchestrator.providers.egress import Egress, EgressRefused


class TokenRefusedError(OrchestratorError):
    """The token endpoint refused what it was sent (credentials, key, grant): no retry fixes it."""

    code = "token_request_refused"


async def exchange_json(egress: Egress, method: str, url: str, what: str,
                        **kwargs: Any) -> tuple[int, bytes, Any]:
    """One outbound call to a provider's auth endpoint (`what` names it): (status, raw body, its JSON or None).
    Refused by egress: TokenRefusedError; unreachable, 5xx or 429: TransientError (retried by the caller)."""
    try:
        async with egress.outbound(method, url, timeout=aiohttp.ClientTimeout(total=30), **kwargs) as resp:
            raw, status = await resp.read(), resp.status
    except EgressRefused as refused:
        raise TokenRefusedError(f"cannot reach the {what}: {refused}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"{what} unreachable: {type(exc).__name__}: {exc}") from None
    if status >= 500 or status == 429:
        raise TransientError(f"{what} answered HTTP {status}")
    try:
        return status, raw, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw, None


async def request_token(egress: Egress, url: str, *, what: str, token_field: str = "access_token",
                        data: dict[str, str] | None = None, headers: dict[str, str] | None = None
                        ) -> dict[str, Any]:
    """POST to the token endpoint; the answer's JSON object when it carries `token_field`. `what` names the
    request in errors ("the client credentials", "the app's JWT")."""
    status, raw, body = await exchange_json(egress, "POST", url, "token endpoint", data=data,
                                            headers={"Accept": "application/json", **(headers or {})})
    if not isinstance(body, dict):
        shown = raw[:120].decode(errors="replace").strip()
        raise TokenRefusedError(f"the token endpoint answered HTTP {status} with no token but {shown!r}")
    if status >= 400 or not body.get(token_field):
        detail = ": ".join(str(body[k]) for k in ("error", "error_description", "message") if body.get(k)) or (
            f"HTTP {status} without {token_field}")
        raise TokenRefusedError(f"the token endpoint refused {what}: {detail}")
    return body


def expiry(body: dict[str, Any]) -> datetime | None:
    """When the token expires: `expires_in` seconds (OAuth2) or an ISO `expires_at` (GitHub's installation
    tokens); None when the answer says neither in a usable form (an `expires_in` of 1e13 s ends past year
    9999: OverflowError)."""
    try:
        if body.get("expires_in"):
            return datetime.now(UTC) + timedelta(seconds=int(body["expires_in"]))
        if isinstance(body.get("expires_at"), str):
            at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            return at if at.tzinfo else at.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None
    return None
