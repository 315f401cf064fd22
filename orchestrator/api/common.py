"""Helpers every route module uses: the caller's environment and the connection it names."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import orjson
from aiohttp import web

from orchestrator.api.errors import raise_error
from orchestrator.api.keys import ENVIRONMENT, PLATFORM
from orchestrator.store import connections as connections_repo
from orchestrator.store.types import Connection, Environment
from orchestrator.timestamps import iso

__all__ = ["iso"]  # the API's one timestamp form, for the route modules


def environment(request: web.Request) -> Environment:
    return request[ENVIRONMENT]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON as every route answers: datetimes anywhere in `data` are written by `iso`."""
    body = orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME)
    return web.Response(body=body, status=status, content_type="application/json")


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise_error(400, "invalid_json", f"request body is not JSON: {exc}")


def connection_headers(request: web.Request) -> tuple[str, str]:
    connection_id = request.headers.get("Connection-Id", "").strip()
    integration = request.headers.get("Provider-Config-Key", "").strip()
    missing = [h for h, v in (("Connection-Id", connection_id), ("Provider-Config-Key", integration)) if not v]
    if missing:
        raise_error(400, "missing_headers", f"missing header(s): {', '.join(missing)}")
    return integration, connection_id


async def load_connection(request: web.Request, integration: str, connection_id: str) -> Connection:
    env = environment(request)
    async with request.app[PLATFORM].pool.acquire() as conn:
        found = await connections_repo.get(conn, request.app[PLATFORM].sealer, env.id, integration, connection_id)
    if found is None:
        raise_error(404, "unknown_connection",
                    f"no connection '{connection_id}' for integration '{integration}' in environment '{env.name}'")
    return found


def is_number(raw: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return raw.isascii() and raw.isdigit()


def int_header(request: web.Request, name: str, maximum: int) -> int:
    """A small non-negative integer header (retry counts); absent means 0, anything else is a 400."""
    raw = request.headers.get(name)
    if raw is None or raw.strip() == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= maximum:
        raise_error(400, "invalid_headers", f"{name} must be an integer from 0 to {maximum}, got {raw!r}")
    return value
