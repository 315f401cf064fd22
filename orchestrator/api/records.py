"""GET /records: the records cache, paged by an opaque cursor (Nango's wire format); PATCH /records/prune.

A page is streamed as PostgreSQL sends it (chunks of stored response bytes): never held whole in memory.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import metrics
from orchestrator.api.common import connection_headers, environment, json_body, json_response, load_connection
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.errors import InvalidInputError
from orchestrator.store import records as records_repo

routes = web.RouteTableDef()

MAX_LIMIT = 10_000
MAX_IDS = 100
MAX_NAME_LENGTH = 255
PRUNE_DEFAULT_LIMIT = 1000  # Nango's default and bounds for one prune call
PRUNE_MAX_LIMIT = 10_000


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 100
    try:
        value = int(raw)
    except ValueError:
        raise_error(400, "invalid_query_params", f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    if not 1 <= value <= MAX_LIMIT:
        raise_error(400, "invalid_query_params", f"limit must be from 1 to {MAX_LIMIT}, got {value}")
    return value


def _modified_after(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise_error(400, "invalid_query_params", f"modified_after must be an ISO 8601 date-time, got {raw!r}")
    if value.tzinfo is None:
        raise_error(400, "invalid_query_params", f"modified_after needs a time zone (e.g. Z), got {raw!r}")
    return value


def _filter(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    parts = [p.strip().lower() for p in raw.split(",") if p.strip()]
    bad = [p for p in parts if p not in records_repo.ACTIONS]
    if bad or not parts:
        raise_error(400, "invalid_query_params",
                    f"filter accepts added, updated, deleted (comma-separated); got {raw!r}")
    return parts


def _ids(raw: list[str]) -> list[str] | None:
    if len(raw) > MAX_IDS:
        raise_error(400, "invalid_query_params", f"ids accepts at most {MAX_IDS} values, got {len(raw)}")
    if any(not i or len(i) > records_repo.MAX_ID_LENGTH for i in raw):
        raise_error(400, "invalid_query_params",
                    f"ids must be non-empty and at most {records_repo.MAX_ID_LENGTH} characters each")
    return raw or None


def _variant(raw: str | None) -> str:
    if raw is None or raw.strip() == "":
        return "base"
    if len(raw) > MAX_NAME_LENGTH:
        raise_error(400, "invalid_query_params", f"variant must be at most {MAX_NAME_LENGTH} characters")
    return raw


@routes.get("/records")
@routes.get("/records/")
async def list_records(request: web.Request) -> web.StreamResponse:
    q = request.query
    model = q.get("model", "").strip()
    if not model:
        raise_error(400, "invalid_query_params", "model is required")
    if len(model) > MAX_NAME_LENGTH:
        raise_error(400, "invalid_query_params", f"model must be at most {MAX_NAME_LENGTH} characters")
    ids = _ids(q.getall("ids", []))
    limit = _limit(q.get("limit"))
    modified_after = _modified_after(q.get("modified_after") or q.get("delta"))
    actions = _filter(q.get("filter"))
    variant = _variant(q.get("variant"))
    cursor = q.get("cursor") or None
    if cursor is not None:
        try:
            records_repo.decode_cursor(cursor)
        except InvalidInputError:
            raise_error(400, "invalid_query_params",
                        f"cursor is not valid ({cursor[:40]!r}): pass back a next_cursor value unchanged")
    integration, connection_id = connection_headers(request)
    connection = await load_connection(request, integration, connection_id)
    scope = records_repo.Scope(environment(request).id, connection.id, model, variant)
    return await stream_records(request, scope, cursor=cursor, limit=limit, modified_after=modified_after,
                                actions=actions, ids=ids)


async def stream_records(request: web.Request, scope: records_repo.Scope, **page: Any) -> web.StreamResponse:
    """A page in Nango's wire format, streamed as PostgreSQL sends it (`records.stream_page`): at most a chunk
    in memory, whatever the page size."""
    started = time.perf_counter()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})

    async def write(chunk: bytes) -> None:
        if not response.prepared:  # headers go out with the first records: an error before them is a JSON error
            await response.prepare(request)
            await response.write(b'{"records":[')
        await response.write(chunk)
    async with request.app[PLATFORM].pool.acquire() as conn:
        served, next_cursor = await records_repo.stream_page(conn, scope, write, **page)
    if not response.prepared:
        await write(b"")
    await response.write(b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}")
    await response.write_eof()
    env = environment(request).name  # observed once the page is out: a failed page is not a page served
    metrics.RECORDS_SERVED.labels(env).inc(served)
    metrics.RECORDS_API_DURATION.labels(env).observe(time.perf_counter() - started)
    return response


class PruneBody(BaseModel):
    """Nango's PATCH /records/prune body (what the Node client's pruneRecords sends)."""
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    until_cursor: str = Field(min_length=1, description="prune up to and including this record's cursor")
    variant: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    limit: int = Field(PRUNE_DEFAULT_LIMIT, ge=1, le=PRUNE_MAX_LIMIT)


class PruneResult(BaseModel):
    count: int = Field(description="records pruned by this call")
    has_more: bool = Field(description="more records up to the cursor remain: call again with the same cursor")


@routes.patch("/records/prune")
async def prune_records(request: web.Request) -> web.Response:
    """Drop the payload of a connection's records up to a cursor, keeping each as a tombstone (`pruned_at`)."""
    body = PruneBody.model_validate(await json_body(request))
    until = records_repo.decode_cursor(body.until_cursor)  # an InvalidInputError is a 400
    integration, connection_id = connection_headers(request)
    connection = await load_connection(request, integration, connection_id)
    scope = records_repo.Scope(environment(request).id, connection.id, body.model, _variant(body.variant))
    async with request.app[PLATFORM].pool.acquire() as conn:
        count, has_more = await records_repo.prune(conn, scope, until, limit=body.limit)
    return json_response({"count": count, "has_more": has_more})
