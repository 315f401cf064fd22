"""The records cache: exact under retries, ordered for consumers.

Writers on one (connection, model, variant) are serialised by a transaction-scoped advisory
lock, so `cursor` values become visible in commit order and a consumer paging by cursor never
skips a change that commits later with a smaller cursor. A record whose hash did not change is
not written at all, so a replayed batch is a no-op and moves nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from orchestrator.errors import InvalidInputError, RecordError

MAX_ID_LENGTH = 255
ACTIONS = ("added", "updated", "deleted")


@dataclass
class WriteResult:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    """Which slice of the cache a write or read touches."""

    environment_id: int
    connection_pk: int
    model: str
    variant: str = "base"


def _record_id(record: Any, index: int, model: str) -> str:
    if not isinstance(record, dict):
        raise RecordError(f"record #{index} of model '{model}' is a {type(record).__name__}, not an object",
                          model=model, index=index)
    rid = record.get("id")
    if rid is None or isinstance(rid, bool) or not isinstance(rid, str | int) or rid == "":
        raise RecordError(
            f"record #{index} of model '{model}' has no usable 'id' (got {rid!r}); "
            "ids must be non-empty strings or integers", model=model, index=index)
    sid = str(rid)
    if len(sid) > MAX_ID_LENGTH:
        raise RecordError(f"record id '{sid[:40]}...' of model '{model}' is {len(sid)} characters; "
                          f"the limit is {MAX_ID_LENGTH}", model=model, record_id=sid[:64])
    return sid


def _encode(record: dict[str, Any], rid: str, model: str) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise RecordError(f"record '{rid}' of model '{model}' is not JSON: {exc}", model=model,
                          record_id=rid) from None


def prepare(records: Sequence[Any], model: str) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """Validate and encode a batch: rows (id, json, sha256) with duplicate ids folded, last wins.

    Validation happens before anything is written, so a rejected batch writes nothing.
    """
    by_id: dict[str, tuple[str, str, bytes]] = {}
    dupes: list[str] = []
    for index, record in enumerate(records):
        rid = _record_id(record, index, model)
        body = _encode(record, rid, model)
        if rid in by_id:
            dupes.append(rid)
            del by_id[rid]  # keep the position of the last occurrence
        by_id[rid] = (rid, body.decode(), hashlib.sha256(body).digest())
    return list(by_id.values()), dupes


async def _lock(conn: asyncpg.Connection, scope: Scope) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))",
        f"{scope.model}:{scope.variant}", scope.connection_pk)


async def _add_counts(conn: asyncpg.Connection, job_id: int | None, model: str, result: WriteResult) -> None:
    if job_id is None or not (result.added or result.updated or result.deleted):
        return
    await conn.execute(
        "INSERT INTO job_counts (job_id, model, added, updated, deleted) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (job_id, model) DO UPDATE SET added = job_counts.added + EXCLUDED.added,"
        " updated = job_counts.updated + EXCLUDED.updated, deleted = job_counts.deleted + EXCLUDED.deleted",
        job_id, model, result.added, result.updated, result.deleted)


_UPSERT = """
WITH up AS (
    INSERT INTO records AS r (connection_pk, model, variant, external_id, environment_id, data, data_hash,
                              last_action, job_id)
    SELECT $1, $2, $3, t.external_id, $4, t.data::jsonb, t.data_hash, 'ADDED', $5 FROM _batch t
    ON CONFLICT (connection_pk, model, variant, external_id) DO UPDATE SET
        data = EXCLUDED.data,
        data_hash = EXCLUDED.data_hash,
        last_modified_at = now(),
        last_action = CASE WHEN r.deleted_at IS NULL THEN 'UPDATED' ELSE 'ADDED' END,
        deleted_at = NULL,
        job_id = EXCLUDED.job_id,
        cursor = nextval('records_cursor_seq')
    WHERE r.data_hash IS DISTINCT FROM EXCLUDED.data_hash OR r.deleted_at IS NOT NULL
    RETURNING (xmax = 0) AS inserted, last_action
)
SELECT count(*) FILTER (WHERE inserted OR last_action = 'ADDED') AS added,
       count(*) FILTER (WHERE NOT inserted AND last_action = 'UPDATED') AS updated
FROM up
"""


async def save_prepared(
    conn: asyncpg.Connection, scope: Scope, rows: list[tuple[str, str, bytes]], *, job_id: int | None,
    track_seen: bool = False,
) -> WriteResult:
    """Upsert pre-validated rows in one transaction: COPY to a temp table, one INSERT ... ON CONFLICT."""
    result = WriteResult()
    if not rows:
        return result
    async with conn.transaction():
        await _lock(conn, scope)
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _batch (external_id text, data text, data_hash bytea)"
            " ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table("_batch", records=rows, columns=["external_id", "data", "data_hash"])
        counts = await conn.fetchrow(_UPSERT, scope.connection_pk, scope.model, scope.variant,
                                     scope.environment_id, job_id)
        result.added, result.updated = counts["added"], counts["updated"]
        if track_seen and job_id is not None:
            await conn.execute(
                "INSERT INTO job_seen_records (job_id, model, external_id)"
                " SELECT $1, $2, external_id FROM _batch ON CONFLICT DO NOTHING", job_id, scope.model)
        await _add_counts(conn, job_id, scope.model, result)
    return result


async def batch_save(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, job_id: int | None = None,
    track_seen: bool = False,
) -> WriteResult:
    rows, dupes = prepare(records, scope.model)
    result = await save_prepared(conn, scope, rows, job_id=job_id, track_seen=track_seen)
    result.duplicate_ids = dupes
    return result


async def batch_delete(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, job_id: int | None = None,
) -> WriteResult:
    ids = list(dict.fromkeys(_record_id(r, i, scope.model) for i, r in enumerate(records)))
    result = WriteResult()
    if not ids:
        return result
    async with conn.transaction():
        await _lock(conn, scope)
        result.deleted = await conn.fetchval(
            "WITH d AS (UPDATE records SET deleted_at = now(), last_modified_at = now(), last_action = 'DELETED',"
            " job_id = $5, cursor = nextval('records_cursor_seq')"
            " WHERE connection_pk = $1 AND model = $2 AND variant = $3 AND external_id = any($4::text[])"
            " AND deleted_at IS NULL RETURNING 1) SELECT count(*) FROM d",
            scope.connection_pk, scope.model, scope.variant, ids, job_id)
        await _add_counts(conn, job_id, scope.model, result)
    return result


def deep_merge(base: Any, patch: Any) -> Any:
    """Objects merge recursively, anything else (arrays included) is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return patch


async def batch_update(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, job_id: int | None = None,
) -> WriteResult:
    """Deep-merge partial records into stored ones; ids not stored (or deleted) are reported, not created."""
    patches: dict[str, dict[str, Any]] = {}
    for i, record in enumerate(records):
        rid = _record_id(record, i, scope.model)
        patches[rid] = deep_merge(patches[rid], record) if rid in patches else record
    result = WriteResult()
    if not patches:
        return result
    async with conn.transaction():
        await _lock(conn, scope)
        stored = {r["external_id"]: r["data"] for r in await conn.fetch(
            "SELECT external_id, data FROM records WHERE connection_pk = $1 AND model = $2 AND variant = $3"
            " AND external_id = any($4::text[]) AND deleted_at IS NULL",
            scope.connection_pk, scope.model, scope.variant, list(patches))}
        result.missing_ids = [rid for rid in patches if rid not in stored]
        merged = [deep_merge(stored[rid], patch) for rid, patch in patches.items() if rid in stored]
        rows, _ = prepare(merged, scope.model)
        inner = await save_prepared(conn, scope, rows, job_id=job_id)
        result.updated = inner.updated
    return result


async def get_by_ids(conn: asyncpg.Connection, scope: Scope, ids: Iterable[str | int]) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT external_id, data FROM records WHERE connection_pk = $1 AND model = $2 AND variant = $3"
        " AND external_id = any($4::text[]) AND deleted_at IS NULL",
        scope.connection_pk, scope.model, scope.variant, [str(i) for i in ids])
    return {r["external_id"]: r["data"] for r in rows}


async def delete_unseen(conn: asyncpg.Connection, scope: Scope, job_id: int) -> int:
    """Deletion detection after a successful full run: soft-delete what this job did not save."""
    async with conn.transaction():
        await _lock(conn, scope)
        deleted = await conn.fetchval(
            "WITH d AS (UPDATE records r SET deleted_at = now(), last_modified_at = now(), last_action = 'DELETED',"
            " job_id = $4, cursor = nextval('records_cursor_seq')"
            " WHERE r.connection_pk = $1 AND r.model = $2 AND r.variant = $3 AND r.deleted_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM job_seen_records s WHERE s.job_id = $4 AND s.model = $2"
            " AND s.external_id = r.external_id) RETURNING 1) SELECT count(*) FROM d",
            scope.connection_pk, scope.model, scope.variant, job_id)
        await _add_counts(conn, job_id, scope.model, WriteResult(deleted=deleted))
    return deleted


# ---- reads -------------------------------------------------------------------------------------

def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"c{value}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if not raw.startswith("c"):
            raise ValueError
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(f"invalid cursor {text!r}: pass back a next_cursor value unchanged",
                                parameter="cursor") from None


@dataclass
class Page:
    records_json: list[str]
    next_cursor: str | None

    def to_json(self) -> bytes:
        """The response body, assembled from JSON rendered by PostgreSQL without re-parsing it."""
        nxt = orjson.dumps(self.next_cursor).decode()
        return ('{"records":[' + ",".join(self.records_json) + '],"next_cursor":' + nxt + "}").encode()


_READ = """
SELECT (data || jsonb_build_object('_nango_metadata', jsonb_build_object(
          'first_seen_at', first_seen_at, 'last_modified_at', last_modified_at, 'last_action', last_action,
          'deleted_at', deleted_at, 'pruned_at', NULL,
          'cursor', rtrim(translate(encode(convert_to('c' || cursor::text, 'UTF8'), 'base64'), '+/', '-_'), '=')
       )))::text AS rec,
       cursor
FROM records
WHERE connection_pk = $1 AND model = $2 AND variant = $3 AND cursor > $4
  AND ($5::timestamptz IS NULL OR last_modified_at >= $5)
  AND ($6::text[] IS NULL OR last_action = any($6))
  AND ($7::text[] IS NULL OR external_id = any($7))
ORDER BY cursor
LIMIT $8
"""


async def read_page(
    conn: asyncpg.Connection, scope: Scope, *, cursor: str | None = None, limit: int = 100,
    modified_after: datetime | None = None, actions: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> Page:
    after = decode_cursor(cursor) if cursor else 0
    last_actions = [a.upper() for a in actions] if actions else None
    rows = await conn.fetch(_READ, scope.connection_pk, scope.model, scope.variant, after, modified_after,
                            last_actions, list(ids) if ids else None, limit)
    recs = [r["rec"] for r in rows]
    nxt = encode_cursor(rows[-1]["cursor"]) if len(rows) == limit and rows else None
    return Page(recs, nxt)


async def count(conn: asyncpg.Connection, scope: Scope) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM records WHERE connection_pk = $1 AND model = $2 AND variant = $3"
        " AND deleted_at IS NULL", scope.connection_pk, scope.model, scope.variant)
