"""The records cache: exact under retries, ordered for consumers.

Records live in scopes, one per (connection, model, variant) (migration 0002). Writers of one
scope are serialised by a row lock on its `record_scopes` row, so `cursor` values become visible
in commit order and a consumer paging by cursor never skips a change that commits later with a
smaller cursor. A record whose hash did not change is not written at all, so a replayed batch is
a no-op and moves nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, Literal

import asyncpg
import orjson

from orchestrator.errors import InvalidInputError, NotFoundError, RecordError, TransientError
from orchestrator.sdk import contract

MAX_ID_LENGTH = contract.MAX_ID_LENGTH
ACTIONS = ("added", "updated", "deleted")


@dataclass
class WriteResult:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)
    kept_ids: list[str] = field(default_factory=list)  # left as stored by a merging strategy


@dataclass(frozen=True)
class Scope:
    """Which slice of the cache a write or read touches."""

    environment_id: int
    connection_pk: int
    model: str
    variant: str = "base"


# What an id may be, how duplicates fold and how patches merge are the script contract's
# (orchestrator.sdk.contract), shared with `nango_mock` and the dry run so they accept and refuse
# exactly what this store does; here a refusal is a RecordError, the platform's error for it.
_encode = contract.encode_record
Item = contract.Item  # (id, record, index in the caller's batch)


@contextlib.contextmanager
def record_errors() -> Iterator[None]:
    """The contract's InvalidRecord, raised as RecordError (what the host and the API answer with)."""
    try:
        yield
    except contract.InvalidRecord as exc:
        raise RecordError(exc.message, **exc.details) from None


_SCOPE_ID = "(SELECT id FROM record_scopes WHERE connection_pk = $1 AND model = $2 AND variant = $3)"
_SCOPE_LOCK = ("SELECT id FROM record_scopes WHERE connection_pk = $1 AND model = $2 AND variant = $3"
               " FOR UPDATE")


async def _lock_scope(conn: asyncpg.Connection, scope: Scope, *, create: bool) -> int | None:
    """Lock the scope row for this transaction (creating it when asked); None if it does not exist.

    The row lock serialises writers of one scope, so cursors become visible in commit order, and a
    connection delete (which cascades to the scope) waits until the batch has committed.
    """
    key = (scope.connection_pk, scope.model, scope.variant)
    sid = await conn.fetchval(_SCOPE_LOCK, *key)
    if sid is None and create:
        try:
            await conn.execute(
                "INSERT INTO record_scopes (connection_pk, model, variant, environment_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", *key, scope.environment_id)
        except asyncpg.ForeignKeyViolationError:
            raise NotFoundError(f"connection {scope.connection_pk} does not exist (deleted during the run?)",
                                connection_pk=scope.connection_pk) from None
        sid = await conn.fetchval(_SCOPE_LOCK, *key)
    return sid


async def _add_counts(conn: asyncpg.Connection, job_id: int | None, model: str, result: WriteResult) -> None:
    if job_id is None or not (result.added or result.updated or result.deleted):
        return
    await conn.execute(
        "INSERT INTO job_counts (job_id, model, added, updated, deleted) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (job_id, model) DO UPDATE SET added = job_counts.added + EXCLUDED.added,"
        " updated = job_counts.updated + EXCLUDED.updated, deleted = job_counts.deleted + EXCLUDED.deleted",
        job_id, model, result.added, result.updated, result.deleted)


# What is stored for each id of a batch. From PostgreSQL 17 on, one scan of the primary key for all the ids (= any:
# the array sorted, one descent, leaf pages walked in order; it stays that plan with statistics that know nothing
# of the scope). Measured on 18: 14 ms of backend CPU per 5,000 stored ids and 0-2 ms for ids not stored, against
# 34 and 16-18 ms for one LATERAL probe per id. Before 17 the planner may scan the whole scope for a large array
# (seen on 15: a bitmap scan on scope_id, the ids as a filter), so there each id keeps its LATERAL ... LIMIT 1
# probe, a nested loop whatever the statistics say. `first_seen_at` comes rendered as the response shows it
# (`records_time`, migration 0030: UTC, milliseconds, `Z`), for the bodies of the records that changed.
_LOOKUP = """
SELECT r.external_id, r.data_hash, r.deleted_at IS NOT NULL AS deleted, r.job_id,
       records_time(r.first_seen_at) AS first_seen_at
FROM records r WHERE r.scope_id = $1 AND r.external_id = any($2::text[])
"""
_LOOKUP_PROBES = """
SELECT u.id, x.data_hash, x.deleted_at IS NOT NULL AS deleted, x.job_id, x.first_seen_at
FROM unnest($2::text[]) AS u(id)
CROSS JOIN LATERAL (
    SELECT r.data_hash, r.deleted_at, r.job_id, records_time(r.first_seen_at) AS first_seen_at
    FROM records r WHERE r.scope_id = $1 AND r.external_id = u.id LIMIT 1
) x
"""

# The transaction's now(), as the response renders it, and blocks of fresh cursors for `$1` records: each nextval
# is the start of a block of `step` values (the sequence's increment, migration 0023) that no other caller can get,
# so one call covers `step` records where it took one call per record. The step is read with the blocks: with any
# increment (1 before the migration) the cursors are unique. Taken under the scope lock: each is larger than any
# cursor committed in the scope before.
_BLOCKS = ("records_time(now()) AS now, s.seqincrement AS step, array(SELECT nextval('records_cursor_seq')"
           " FROM generate_series(1, ({n}::bigint + s.seqincrement - 1) / s.seqincrement)) AS starts")
_FROM_SEQ = " FROM pg_sequence s WHERE s.seqrelid = 'records_cursor_seq'::regclass"
_STAMP = "SELECT " + _BLOCKS.format(n="$1") + _FROM_SEQ


def _cursors(stamp: asyncpg.Record, n: int) -> list[int]:
    """The first `n` cursors of a stamp's blocks, ascending."""
    step = stamp["step"]
    starts = sorted(stamp["starts"])
    if len(starts) == 1:
        return list(range(starts[0], starts[0] + n))
    return [c for start in starts for c in range(start, start + step)][:n]

# Changed or revived records, their bodies rendered by the caller. ON CONFLICT probes the primary key row by
# row: no plan to get wrong.
_UPSERT = """
INSERT INTO records AS r (scope_id, environment_id, connection_pk, model, variant, external_id, body, meta_len,
                          data_hash, last_action, job_id, cursor)
SELECT $1, $8, $9, $10, $11, u.id, u.body, u.meta_len, u.hash, 'ADDED', $2, u.cursor
FROM unnest($3::text[], $4::text[], $5::int[], $6::bytea[], $7::bigint[]) AS u(id, body, meta_len, hash, cursor)
ON CONFLICT (scope_id, external_id) DO UPDATE SET
    body = EXCLUDED.body,
    meta_len = EXCLUDED.meta_len,
    data_hash = EXCLUDED.data_hash,
    last_modified_at = now(),
    last_action = CASE WHEN r.deleted_at IS NULL THEN 'UPDATED' ELSE 'ADDED' END,
    deleted_at = NULL,
    job_id = EXCLUDED.job_id,
    cursor = EXCLUDED.cursor
WHERE r.data_hash IS DISTINCT FROM EXCLUDED.data_hash OR r.deleted_at IS NOT NULL
"""

# The direct path for a batch that mostly changed: one statement per chunk, no lookup first. Each id is probed
# once (LATERAL ... LIMIT 1: a primary-key probe whatever the statistics say); a stored row that changed (or was
# deleted) is updated through its ctid, an unknown id inserted, an unchanged row left alone (not even locked).
# Bodies come in two parts rendered by the caller: the JSON up to `"first_seen_at":` and the metadata after it
# (as for an update); the stored first_seen_at goes between, so nothing counts characters. A revived or new row
# says ADDED ($7: now() as rendered, the first_seen_at of a new row). The scope row is locked: no other writer
# inserts these ids meanwhile. A job keeps what the rows it changed first were (as `_keep_prior` does). The chunk
# comes from the session's staging table (`_STAGE`), filled by binary COPY and emptied by the statement itself.
_DIRECT = """
WITH u AS (DELETE FROM records_direct RETURNING id, cursor, head, tail, len, hash), v AS (
    SELECT u.id, u.cursor, u.head, u.tail, u.len, u.hash, x.tid, x.data_hash AS old_hash, x.live, x.job_id, x.seen
    FROM u
    LEFT JOIN LATERAL (SELECT r.ctid AS tid, r.data_hash, r.deleted_at IS NULL AS live, r.job_id,
                              records_time(r.first_seen_at) AS seen
                       FROM records r WHERE r.scope_id = $1 AND r.external_id = u.id LIMIT 1) x ON true
), up AS (
    UPDATE records r SET
        body = v.head || v.seen
            || CASE WHEN v.live THEN v.tail
                    ELSE replace(v.tail, '"last_action":"UPDATED"', '"last_action":"ADDED"') END,
        meta_len = v.len + length(v.seen) - CASE WHEN v.live THEN 0 ELSE 2 END,
        data_hash = v.hash,
        last_modified_at = now(),
        last_action = CASE WHEN v.live THEN 'UPDATED' ELSE 'ADDED' END,
        deleted_at = NULL,
        job_id = $2,
        cursor = v.cursor
    FROM v WHERE r.ctid = v.tid AND (v.old_hash <> v.hash OR NOT v.live)
    RETURNING v.id, v.old_hash, v.live, v.job_id
), ins AS (
    INSERT INTO records (scope_id, environment_id, connection_pk, model, variant, external_id, cursor, body,
                         meta_len, data_hash, last_action, job_id)
    SELECT $1, $3, $4, $5, $6, v.id, v.cursor,
           v.head || $7::text || replace(v.tail, '"last_action":"UPDATED"', '"last_action":"ADDED"'),
           v.len + length($7::text) - 2, v.hash, 'ADDED', $2
    FROM v WHERE v.tid IS NULL
    RETURNING 1
), prior AS (
    INSERT INTO job_prior_records (job_id, scope_id, external_id, prior_hash, prior_live)
    SELECT $2, $1, id, old_hash, live FROM up WHERE $2 IS NOT NULL AND job_id IS DISTINCT FROM $2
    ON CONFLICT DO NOTHING
)
SELECT (SELECT count(*) FROM ins) + count(*) FILTER (WHERE NOT live) AS added,
       count(*) FILTER (WHERE live) AS updated
FROM up
"""
_DIRECT_CHUNK = 1000  # rows per statement: the next chunk is encoded while the server writes this one
# A chunk's rows reach `_DIRECT` by binary COPY: as six parameter arrays, asyncpg's per-element checks and encoding
# were about two thirds of the client's CPU on this path (1.4 of 2.2 s per 100,000 records, profiled). A temporary
# table is the session's own; ON COMMIT DELETE ROWS empties it even if a statement failed half way.
_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS records_direct (id text, cursor bigint, head text, tail text, len int,"
          " hash bytea) ON COMMIT DELETE ROWS")
_STAGE_COLUMNS = ["id", "cursor", "head", "tail", "len", "hash"]
_STAGE_ROW = struct.Struct("!hi")  # the field count, the id's length

# Which path a batch takes: whether the scope holds any record, and the stored hash of a sample of ids (NULL: not
# stored; empty: deleted, so it would be revived). The scope row is locked: nothing changes under this answer. The
# same round trip takes the stamp for the batch's `$3` records (`_STAMP`), which every path but a replay needs.
_PROBE = """
SELECT EXISTS (SELECT 1 FROM records WHERE scope_id = $1) AS stored,
       array(SELECT x.h FROM unnest($2::text[]) WITH ORDINALITY AS u(id, i)
             LEFT JOIN LATERAL (SELECT CASE WHEN r.deleted_at IS NULL THEN r.data_hash ELSE '\\x'::bytea END AS h
                                FROM records r WHERE r.scope_id = $1 AND r.external_id = u.id LIMIT 1) x ON true
             ORDER BY u.i) AS hashes,
       """ + _BLOCKS.format(n="$3") + _FROM_SEQ
SAMPLE = 32  # ids probed to choose a batch's path; a batch this small or smaller takes the lookup path

_COPY_COLUMNS = ["scope_id", "environment_id", "connection_pk", "model", "variant", "external_id", "cursor",
                 "body", "meta_len", "data_hash", "last_action", "job_id"]
_COPY_CHUNK = 250  # rows per COPY message: small enough that building them overlaps the server's work
_COPY_FIRST = 32  # rows of the first message: the server starts ingesting while the second is built
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_PGCOPY_TRAILER = struct.pack("!h", -1)
_LEN = struct.Struct("!i")
_CURSOR_BODY = struct.Struct("!iqi")  # the cursor's length and value, the body's length
_META_HASH = struct.Struct("!iii")  # meta_len's length and value, the hash's length
_META_END = b'"}}'


def _copy_text(value: str) -> bytes:
    raw = value.encode()
    return _LEN.pack(len(raw)) + raw


def _meta_prefix(first_seen_at: bytes, now: bytes, action: bytes) -> bytes:
    """`_nango_metadata` up to the cursor (what records_meta() of migration 0030 renders in SQL), the times as
    `records_time` rendered them."""
    return b"".join((b',"_nango_metadata":{"first_seen_at":', first_seen_at, b',"last_modified_at":', now,
                     b',"last_action":"', action, b'","deleted_at":null,"pruned_at":null,"cursor":"'))


def _cursor_text(value: int) -> bytes:
    """encode_cursor's text as bytes. The base64 of "c" and digits never holds '+' or '/', so plain base64 is
    the URL-safe one here."""
    return binascii.b2a_base64(b"c%d" % value, newline=False).rstrip(b"=")


@dataclass
class _Plan:
    """One batch sorted out under the scope lock: what is new, what changed, what the job changes first."""

    new: list[int] = field(default_factory=list)  # positions in the batch
    changed: list[tuple[int, bytes, bool]] = field(default_factory=list)  # position, first_seen_at as rendered,
    # revived
    prior: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def cursors(self, taken: list[int]) -> tuple[list[int], list[int]]:
        """Fresh cursors of the new and of the changed records, ascending in batch order across both."""
        if not self.changed:
            return taken, []
        if not self.new:
            return [], taken
        at = dict(zip(sorted([*self.new, *(c[0] for c in self.changed)]), taken, strict=True))
        return [at[k] for k in self.new], [at[c[0]] for c in self.changed]


class _Bodies:
    """Each item's stored JSON and its sha256, computed once, when first needed (or ahead, while the server
    works); bytes the host already encoded for its size quota are reused, not encoded again."""

    def __init__(self, items: list[Item], model: str, encoded: Sequence[bytes | None] | None) -> None:
        self.items, self.model, self.encoded = items, model, encoded
        self.done: list[tuple[bytes, bytes] | None] = [None] * len(items)
        self.ahead = 0  # items [0, ahead) are done

    def __getitem__(self, k: int) -> tuple[bytes, bytes]:
        got = self.done[k]
        if got is None:
            rid, record, index = self.items[k]
            encoded = self.encoded
            body = encoded[index] if encoded is not None and index < len(encoded) else None
            if body is None:
                body = _encode(record, rid, index, self.model)
            else:
                contract.check_body(body, rid, index, self.model)
            got = self.done[k] = (body, sha256(body).digest())
        return got

    def fill(self, stop: int) -> None:
        """Encode items [ahead, stop) in one tight loop. Bytes passed in that hold no NUL escape are hashed right
        here (no call per item); anything else goes through `__getitem__`, which encodes, checks and raises."""
        done, items, encoded, get = self.done, self.items, self.encoded, self.__getitem__
        if encoded is None:
            for k in range(self.ahead, stop):
                if done[k] is None:
                    get(k)
        else:
            given = len(encoded)
            for k in range(self.ahead, stop):
                if done[k] is None:
                    index = items[k][2]
                    body = encoded[index] if index < given else None
                    # a NUL escape needs a backslash: one memchr first, the escape searched only when there is one
                    if body is None or (body.find(92) >= 0 and b"\\u0000" in body):
                        get(k)
                    else:
                        done[k] = (body, sha256(body).digest())
        self.ahead = max(self.ahead, stop)

    async def ahead_of(self, pending: asyncio.Future[Any], step: int = 250) -> None:
        """Encode in order while `pending` (the server's work) runs; stop as soon as it is answered. If encoding
        fails, the answer is awaited first (the connection serves one statement at a time), then it raises."""
        n = len(self.items)
        try:
            while not pending.done() and self.ahead < n:
                self.fill(min(self.ahead + step, n))
                await asyncio.sleep(0)  # lets the event loop take the answer when it has arrived
        except BaseException:
            with contextlib.suppress(Exception):
                await pending
            raise


async def _copy_rows(scope: Scope, scope_id: int, bodies: _Bodies, new: list[int], cursors: list[int],
                     prefix: bytes, job_id: int | None) -> AsyncIterator[bytes]:
    """New records in COPY's binary format, built (and encoded) chunk by chunk while PostgreSQL ingests the
    previous one. A record that fails to encode raises here: COPY is aborted and the transaction rolls back."""
    head = (struct.pack("!hiqiqiq", len(_COPY_COLUMNS), 8, scope_id, 8, scope.environment_id, 8, scope.connection_pk)
            + _copy_text(scope.model) + _copy_text(scope.variant))
    tail = _copy_text("ADDED") + (struct.pack("!iq", 8, job_id) if job_id is not None else _LEN.pack(-1))
    pack_len, pack_cursor, pack_meta, b64 = _LEN.pack, _CURSOR_BODY.pack, _META_HASH.pack, binascii.b2a_base64
    items, done, fixed, end = bodies.items, bodies.done, len(prefix) + len(_META_END), _META_END
    parts: list[bytes] = [_PGCOPY_HEADER]
    start, size = 0, _COPY_FIRST
    while start < len(new):
        chunk, chunk_cursors = new[start:start + size], cursors[start:start + size]
        start, size = start + size, _COPY_CHUNK
        bodies.fill(chunk[-1] + 1)
        for k, cursor in zip(chunk, chunk_cursors, strict=True):
            body, digest = done[k] or bodies[k]
            raw_id = items[k][0].encode()
            text = b64(b"c%d" % cursor, newline=False).rstrip(b"=")  # _cursor_text, inlined
            meta_len = fixed + len(text)
            parts += (head, pack_len(len(raw_id)), raw_id, pack_cursor(8, cursor, len(body) - 1 + meta_len),
                      body[:-1], prefix, text, end, pack_meta(4, meta_len, 32), digest, tail)
        yield b"".join(parts)
        parts = []
    yield _PGCOPY_TRAILER


def _plan(items: list[Item], bodies: _Bodies, stored: dict[str, Any], job_id: int | None,
          result: WriteResult) -> _Plan:
    plan = _Plan()
    if not stored:
        plan.new = list(range(len(items)))
        return plan
    for k, (rid, _, _) in enumerate(items):
        found = stored.get(rid)
        if found is None:
            plan.new.append(k)
            continue
        digest = bodies[k][1]
        stored_hash, deleted, stored_job, first_seen_at = found
        if deleted or stored_hash != digest:
            plan.changed.append((k, first_seen_at.encode(), deleted))
            if deleted:
                result.added += 1  # a soft-deleted record that comes back is ADDED again
            else:
                result.updated += 1
            if job_id is not None and stored_job != job_id:
                plan.prior.append((rid, stored_hash, not deleted))
    return plan


_Path = Literal["empty", "fresh", "direct", "lookup"]


async def _choose_path(conn: asyncpg.Connection, scope_id: int, items: list[Item],
                       bodies: _Bodies) -> tuple[_Path, asyncpg.Record]:
    """Probe a sample of the batch for its path: "empty" (the scope holds no record: every record is new),
    "direct" (most of the sample changed), "fresh" (no sampled id is stored: most likely all new, COPY tried
    first) or "lookup"; with the stamp (now() and cursors for every record of the batch)."""
    step = len(items) / SAMPLE
    sample = [int(i * step) for i in range(SAMPLE)]
    probe = asyncio.ensure_future(conn.fetchrow(_PROBE, scope_id, [items[k][0] for k in sample], len(items)))
    try:
        digests = [bodies[k][1] for k in sample]  # hashed while the server probes
    except BaseException:
        with contextlib.suppress(Exception):
            await probe  # the connection serves one statement at a time
        raise
    # Nothing more is encoded ahead here: the probe is answered in well under a millisecond, and the event loop
    # hears of it only a few steps of encoding later (2-3 ms a batch, measured), time in which PostgreSQL waits.
    # Whatever the path, the rest is encoded later, while the server works (COPY's previous chunk, the lookup).
    row = await probe
    if not row["stored"]:
        return "empty", row
    hashes = row["hashes"]
    if all(h is None for h in hashes):
        return "fresh", row
    changed = sum(1 for h, d in zip(hashes, digests, strict=True) if h is not None and h != d)
    return ("direct" if changed * 2 > SAMPLE else "lookup"), row


_FIRST_SEEN = b',"_nango_metadata":{"first_seen_at":'


async def _save_direct(conn: asyncpg.Connection, scope: Scope, scope_id: int, bodies: _Bodies,
                       job_id: int | None, result: WriteResult, stamp: asyncpg.Record) -> None:
    """Write the batch with `_DIRECT`, chunk by chunk: each chunk is copied into the staging table, and the next
    one encoded and built while the server writes it. Cursors (the probe's stamp) ascend in batch order (an
    unchanged record leaves its cursor unused)."""
    n = len(bodies.items)
    await conn.execute(_STAGE)
    now, cursors = stamp["now"], _cursors(stamp, n)
    mid = _meta_prefix(b"", now.encode(), b"UPDATED")[len(_FIRST_SEEN):]  # what follows first_seen_at
    args = (scope_id, job_id, scope.environment_id, scope.connection_pk, scope.model, scope.variant, now)
    pending: asyncio.Future[Any] | None = None
    try:
        for start in range(0, n, _DIRECT_CHUNK):
            data = _staged_rows(bodies, range(start, min(start + _DIRECT_CHUNK, n)), cursors, mid)
            if pending is not None:
                _count_direct(await pending, result)
                pending = None
            await conn.copy_to_table("records_direct", source=_once(data), columns=_STAGE_COLUMNS, format="binary")
            pending = asyncio.ensure_future(conn.fetchrow(_DIRECT, *args))
            await asyncio.sleep(0)  # the statement goes out now; the next chunk is built while the server writes
    except BaseException:
        if pending is not None:
            with contextlib.suppress(Exception):
                await pending  # the connection serves one statement at a time
        raise
    assert pending is not None
    _count_direct(await pending, result)


def _staged_rows(bodies: _Bodies, ks: range, cursors: list[int], mid: bytes) -> bytes:
    """A chunk in COPY's binary format for `records_direct`: the id, the cursor, the body up to `"first_seen_at":`,
    the metadata after it, that metadata's length without first_seen_at, the hash."""
    bodies.fill(ks.stop)  # a record that fails to encode raises here, before anything of the chunk is sent
    items, done, b64 = bodies.items, bodies.done, binascii.b2a_base64
    pack_row, pack_len, pack_cursor, pack_meta = _STAGE_ROW.pack, _LEN.pack, _CURSOR_BODY.pack, _META_HASH.pack
    fixed, head_end = len(_FIRST_SEEN) + len(mid) + len(_META_END), len(_FIRST_SEEN) - 1
    parts: list[bytes] = [_PGCOPY_HEADER]
    for k in ks:
        body, digest = done[k] or bodies[k]
        raw_id = items[k][0].encode()
        cursor = cursors[k]
        text = b64(b"c%d" % cursor, newline=False).rstrip(b"=")  # _cursor_text, inlined
        parts += (pack_row(len(_STAGE_COLUMNS), len(raw_id)), raw_id, pack_cursor(8, cursor, len(body) + head_end),
                  body[:-1], _FIRST_SEEN, pack_len(len(mid) + len(text) + len(_META_END)), mid, text, _META_END,
                  pack_meta(4, fixed + len(text), 32), digest)
    parts.append(_PGCOPY_TRAILER)
    return b"".join(parts)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _count_direct(row: asyncpg.Record, result: WriteResult) -> None:
    """What `_DIRECT` wrote: a revived record is ADDED again, as in the lookup path."""
    result.added += row["added"]
    result.updated += row["updated"]


async def _save(
    conn: asyncpg.Connection, scope: Scope, items: list[Item], *, job_id: int | None, track_seen: bool,
    attempt: int = 0, encoded: Sequence[bytes | None] | None = None,
) -> WriteResult:
    """Upsert validated-id items in one transaction.

    Under the scope lock, a batch larger than SAMPLE is probed first. A scope with no record yet takes every
    record as new: straight into COPY; so does a batch none of whose sampled ids is stored (`_save_fresh`): a
    stored id after all rolls the transaction back and the batch goes again, looked up. A batch that mostly changed
    is upserted directly (`_save_direct`). Otherwise the stored hash of every id is looked up (primary-key probes)
    while the batch is encoded and hashed, unchanged records are skipped, new ones streamed into the table with
    COPY and changed (or revived) ones upserted. Every written row carries its rendered response body; cursors
    ascend in batch order.
    """
    if not items:
        return WriteResult()
    bodies = _Bodies(items, scope.model, encoded)  # encoded and hashed once, whichever attempt writes
    try:
        return await _save_once(conn, scope, bodies, job_id=job_id, track_seen=track_seen, attempt=attempt,
                                fresh=True)
    except _StoredAfterAll:
        return await _save_once(conn, scope, bodies, job_id=job_id, track_seen=track_seen, attempt=attempt,
                                fresh=False)


class _StoredAfterAll(Exception):
    """A batch copied as all new held a stored id: its transaction is rolled back, the batch goes again."""


async def _save_once(conn: asyncpg.Connection, scope: Scope, bodies: _Bodies, *, job_id: int | None,
                     track_seen: bool, attempt: int, fresh: bool) -> WriteResult:
    """`_save` in one transaction; with `fresh` False a batch the probe finds all new is looked up all the same."""
    result = WriteResult()
    items = bodies.items
    ids = [item[0] for item in items]
    async with conn.transaction():
        scope_id = await _lock_scope(conn, scope, create=True)
        assert scope_id is not None
        path: _Path = "lookup"
        stamp: asyncpg.Record | None = None
        if len(items) > SAMPLE:
            path, stamp = await _choose_path(conn, scope_id, items, bodies)
        if path == "direct":
            assert stamp is not None
            await _save_direct(conn, scope, scope_id, bodies, job_id, result, stamp)
        elif path == "fresh" and fresh:
            if not await _save_fresh(conn, scope, scope_id, bodies, job_id, result, stamp):
                raise _StoredAfterAll  # leaves the transaction, which the failed COPY aborted, rolled back
        else:
            await _save_looked_up(conn, scope, scope_id, bodies, job_id, result, lookup=path != "empty",
                                  stamp=stamp)
        if track_seen and job_id is not None:
            await conn.execute(
                "INSERT INTO job_seen_records AS s (job_id, model, external_id, attempt)"
                " SELECT $1, $2, unnest($3::text[]), $4"
                " ON CONFLICT (job_id, model, external_id) DO UPDATE SET attempt = EXCLUDED.attempt"
                " WHERE s.attempt < EXCLUDED.attempt", job_id, scope.model, ids, attempt)
        await _add_counts(conn, job_id, scope.model, result)
    return result


async def _save_looked_up(conn: asyncpg.Connection, scope: Scope, scope_id: int, bodies: _Bodies,
                          job_id: int | None, result: WriteResult, *, lookup: bool,
                          stamp: asyncpg.Record | None = None) -> None:
    """The lookup path (`lookup=False`: the scope is empty, every record is new and nothing is looked up).

    The server probes the ids while this process encodes and hashes the batch; what is not encoded by the
    time the answer comes is encoded when needed (new records: while COPY ingests the previous chunk). The
    probe's stamp, when there was one, covers the whole batch; else one is taken for what is written."""
    items = bodies.items
    stored: dict[str, Any] = {}
    if lookup:
        sql = _LOOKUP if conn.get_server_version() >= (17, 0) else _LOOKUP_PROBES
        pending = asyncio.ensure_future(conn.fetch(sql, scope_id, [item[0] for item in items]))
        await bodies.ahead_of(pending)
        stored = {r[0]: (r[1], r[2], r[3], r[4]) for r in await pending}
    plan = _plan(items, bodies, stored, job_id, result)
    if plan.prior:
        await _keep_prior(conn, job_id, scope_id, plan.prior)
    if not (plan.new or plan.changed):
        return
    written = len(plan.new) + len(plan.changed)
    if stamp is None:
        stamping = asyncio.ensure_future(conn.fetchrow(_STAMP, written))
        await bodies.ahead_of(stamping)  # the server's turn is Python's time to encode ahead
        stamp = await stamping
    now = stamp["now"].encode()
    new_cursors, changed_cursors = plan.cursors(_cursors(stamp, written))
    if plan.changed:
        rendered, lens, hashes = [], [], []
        for (k, first_seen_at, deleted), cursor in zip(plan.changed, changed_cursors, strict=True):
            body, digest = bodies[k]
            meta = (_meta_prefix(first_seen_at, now, b"ADDED" if deleted else b"UPDATED") + _cursor_text(cursor)
                    + _META_END)
            rendered.append((body[:-1] + meta).decode())
            lens.append(len(meta))
            hashes.append(digest)
        await conn.execute(_UPSERT, scope_id, job_id, [items[c[0]][0] for c in plan.changed], rendered, lens,
                           hashes, changed_cursors, scope.environment_id, scope.connection_pk, scope.model,
                           scope.variant)
    if plan.new:
        source = _copy_rows(scope, scope_id, bodies, plan.new, new_cursors, _meta_prefix(now, now, b"ADDED"),
                            job_id)
        await conn.copy_to_table("records", source=source, columns=_COPY_COLUMNS, format="binary")
        result.added += len(plan.new)


async def _save_fresh(conn: asyncpg.Connection, scope: Scope, scope_id: int, bodies: _Bodies, job_id: int | None,
                      result: WriteResult, stamp: asyncpg.Record | None) -> bool:
    """COPY the whole batch as new, without looking its ids up; False when an id was stored after all (the
    primary key refuses it, which aborts the transaction: the caller rolls it back and goes again, looked up).

    The sample showed no stored id, so the batch is almost surely new (a sync's first run, past its first
    batch): sending every id again only to hear that none is stored cost about as much as the COPY's Python.
    No savepoint: its two round trips a batch were paid on every such batch for a refusal that is rare."""
    try:
        await _save_looked_up(conn, scope, scope_id, bodies, job_id, result, lookup=False, stamp=stamp)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "records_pkey":
            raise
        return False
    return True


async def _keep_prior(conn: asyncpg.Connection, job_id: int | None, scope_id: int,
                      prior: list[tuple[str, bytes, bool]]) -> None:
    """Remember what records were before the job first changed them (the first change wins), so a retried
    job can recompute its counts as the net change (`recount`)."""
    await conn.execute(
        "INSERT INTO job_prior_records (job_id, scope_id, external_id, prior_hash, prior_live)"
        " SELECT $1, $2, u.id, u.h, u.live FROM unnest($3::text[], $4::bytea[], $5::bool[]) AS u(id, h, live)"
        " ON CONFLICT DO NOTHING", job_id, scope_id, [p[0] for p in prior], [p[1] for p in prior],
        [p[2] for p in prior])


# Live records a delete is about to remove that the job has not changed yet: their prior state.
_PRIOR_OF_LIVE = (
    "INSERT INTO job_prior_records (job_id, scope_id, external_id, prior_hash, prior_live)"
    " SELECT $1, r.scope_id, r.external_id, r.data_hash, true FROM records r"
    " WHERE r.scope_id = $2 AND r.deleted_at IS NULL AND r.job_id IS DISTINCT FROM $1"
    " AND r.external_id = any($3::text[]) ON CONFLICT DO NOTHING")


async def batch_save(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, job_id: int | None = None,
    track_seen: bool = False, attempt: int = 0, encoded: Sequence[bytes | None] | None = None,
) -> WriteResult:
    """Upsert a batch; duplicate ids keep the last record (reported in `duplicate_ids`).

    Every id is checked before anything is written; a record that is not JSON fails the batch inside its
    transaction, so a rejected batch writes nothing either way. With `track_seen`, the ids are marked seen
    by `attempt` of the job's run (see `begin_attempt`). `encoded`, when given, is each record's stored JSON
    by position (`contract.quota_bodies`, what the host computed for its size quota): not encoded again.
    """
    with record_errors():
        items, dupes = contract.dedupe(records, scope.model)
        result = await _save(conn, scope, items, job_id=job_id, track_seen=track_seen, attempt=attempt,
                             encoded=encoded)
    result.duplicate_ids = dupes
    return result


# Nango's `ignore_if_modified_after` merging strategy: the ids of a batch that another job (a webhook script, say)
# changed after the sync's run started. The run's own earlier writes are not "another job".
_MODIFIED_SINCE = ("SELECT external_id FROM records WHERE scope_id = $1 AND external_id = any($2::text[])"
                   " AND last_modified_at > $3 AND job_id IS DISTINCT FROM $4")
_MARK_SEEN = ("INSERT INTO job_seen_records AS s (job_id, model, external_id, attempt)"
              " SELECT $1, $2, unnest($3::text[]), $4 ON CONFLICT (job_id, model, external_id)"
              " DO UPDATE SET attempt = EXCLUDED.attempt WHERE s.attempt < EXCLUDED.attempt")


async def batch_save_unless_modified(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, since: datetime, job_id: int | None = None,
    track_seen: bool = False, attempt: int = 0, encoded: Sequence[bytes | None] | None = None,
) -> WriteResult:
    """`batch_save`, except that a record stored with a `last_modified_at` later than `since` (the run's start) by
    another job is left as it is (its id in `kept_ids`; still seen, so deletion tracking keeps it). A separate
    function: the default path (`batch_save`) stays exactly as it is, with no lookup added."""
    with record_errors():
        items, dupes = contract.dedupe(records, scope.model)
        async with conn.transaction():  # the scope lock, taken first, covers the lookup and the write
            scope_id = await _lock_scope(conn, scope, create=True)
            kept: set[str] = set()
            if items:
                kept = {r[0] for r in await conn.fetch(_MODIFIED_SINCE, scope_id, [i[0] for i in items], since,
                                                       job_id)}
            result = await _save(conn, scope, [i for i in items if i[0] not in kept], job_id=job_id,
                                 track_seen=track_seen, attempt=attempt, encoded=encoded)
            if kept and track_seen and job_id is not None:
                await mark_seen(conn, job_id, scope.model, kept, attempt)
    result.duplicate_ids = dupes
    result.kept_ids = sorted(kept)
    return result


async def mark_seen(conn: asyncpg.Connection, job_id: int, model: str, ids: Sequence[str], attempt: int = 0) -> None:
    """Ids a run saw without writing them (refused by record validation): deletion tracking keeps what is stored."""
    await conn.execute(_MARK_SEEN, job_id, model, sorted(set(ids)), attempt)


async def batch_delete(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, job_id: int | None = None,
) -> WriteResult:
    """Soft delete by id; ids not stored (or already deleted) are ignored."""
    with record_errors():
        ids = contract.unique_ids(records, scope.model)
    result = WriteResult()
    if not ids:
        return result
    async with conn.transaction():
        scope_id = await _lock_scope(conn, scope, create=False)
        if scope_id is None:
            return result
        if job_id is not None:
            await conn.execute(_PRIOR_OF_LIVE, job_id, scope_id, ids)
        result.deleted = await conn.fetchval(
            "WITH d AS (UPDATE records SET deleted_at = now(), last_modified_at = now(), last_action = 'DELETED',"
            " job_id = $3, cursor = nextval('records_cursor_seq')"
            " WHERE scope_id = $1 AND external_id = any($2::text[]) AND deleted_at IS NULL RETURNING 1)"
            " SELECT count(*) FROM d", scope_id, ids, job_id)
        await _add_counts(conn, job_id, scope.model, result)
    return result


def _record_of(body: str, meta_len: int) -> Any:
    """The record as saved: its body without the `_nango_metadata` suffix."""
    return orjson.loads(body[:-meta_len] + "}")


deep_merge = contract.deep_merge  # objects merge recursively, anything else (arrays included) is replaced


async def batch_update(
    conn: asyncpg.Connection, scope: Scope, records: Sequence[Any], *, job_id: int | None = None,
) -> WriteResult:
    """Deep-merge partial records into stored ones; ids not stored (or deleted) are reported, not created."""
    with record_errors():  # every patch's id and JSON are checked before anything is written
        patches = contract.merge_patches(records, scope.model)
    result = WriteResult()
    if not patches:
        return result
    async with conn.transaction():
        scope_id = await _lock_scope(conn, scope, create=False)
        if scope_id is None:
            result.missing_ids = list(patches)
            return result
        stored = {r["external_id"]: _record_of(r["body"], r["meta_len"]) for r in await conn.fetch(
            "SELECT external_id, body, meta_len FROM records WHERE scope_id = $1"
            " AND external_id = any($2::text[]) AND deleted_at IS NULL", scope_id, list(patches))}
        result.missing_ids = [rid for rid in patches if rid not in stored]
        merged = [deep_merge(stored[rid], patch) for rid, patch in patches.items() if rid in stored]
        with record_errors():
            items, _ = contract.dedupe(merged, scope.model)
            inner = await _save(conn, scope, items, job_id=job_id, track_seen=False)
        result.updated = inner.updated
    return result


async def get_by_ids(conn: asyncpg.Connection, scope: Scope, ids: Iterable[str | int]) -> dict[str, Any]:
    rows = await conn.fetch(
        f"SELECT external_id, body, meta_len FROM records WHERE scope_id = {_SCOPE_ID}"
        " AND external_id = any($4::text[]) AND deleted_at IS NULL",
        scope.connection_pk, scope.model, scope.variant, [str(i) for i in ids])
    return {r["external_id"]: _record_of(r["body"], r["meta_len"]) for r in rows}


# Seen by the run as it stands: covered by the checkpoint it resumed from (or saved), or by its current attempt.
_SEEN = ("EXISTS (SELECT 1 FROM job_seen_records s WHERE s.job_id = {job} AND s.model = {model}"
         " AND s.external_id = r.external_id AND (s.covered OR s.attempt = (SELECT seen_attempt FROM jobs"
         " WHERE id = {job})))")


async def delete_unseen(conn: asyncpg.Connection, scope: Scope, job_id: int) -> int:
    """Deletion detection after a successful full run: soft-delete what this job's run did not save.

    What the run saved is what its current attempt saved plus what the checkpoint it resumed from covers;
    whatever a dead (or frozen) attempt saw beyond that does not count (`begin_attempt`)."""
    async with conn.transaction():
        scope_id = await _lock_scope(conn, scope, create=False)
        if scope_id is None:
            return 0
        await conn.execute(
            "INSERT INTO job_prior_records (job_id, scope_id, external_id, prior_hash, prior_live)"
            " SELECT $1, r.scope_id, r.external_id, r.data_hash, true FROM records r"
            " WHERE r.scope_id = $2 AND r.deleted_at IS NULL AND r.job_id IS DISTINCT FROM $1"
            " AND NOT " + _SEEN.format(job="$1", model="$3") + " ON CONFLICT DO NOTHING",
            job_id, scope_id, scope.model)
        deleted = await conn.fetchval(
            "WITH d AS (UPDATE records r SET deleted_at = now(), last_modified_at = now(), last_action = 'DELETED',"
            " job_id = $3, cursor = nextval('records_cursor_seq')"
            " WHERE r.scope_id = $1 AND r.deleted_at IS NULL"
            " AND NOT " + _SEEN.format(job="$3", model="$2") + " RETURNING 1) SELECT count(*) FROM d",
            scope_id, scope.model, job_id)
        await _add_counts(conn, job_id, scope.model, WriteResult(deleted=deleted))
    return deleted


async def begin_attempt(conn: asyncpg.Connection, job_id: int, attempt: int) -> bool:
    """Start `attempt` of a job's run: its seen set becomes exactly what the run has so far; True when the
    attempt resumes from the sync's checkpoint.

    Resuming from a checkpoint, the run has what the checkpoint covers (rows marked by `cover_seen`);
    starting over, it has nothing. Whatever an earlier, dead attempt saw beyond that is dropped, and rows a
    frozen attempt might still add never count (deletion detection reads only covered rows and rows of the
    job's `seen_attempt`). The job row's lock orders this against a stale attempt saving a checkpoint: that
    one either committed before (and is read here) or is refused (`cover_seen`)."""
    async with conn.transaction():
        current = await conn.fetchval("SELECT seen_attempt FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        if current is None:
            raise NotFoundError(f"job {job_id} does not exist", job_id=job_id)
        if current > attempt:
            raise TransientError(f"attempt {attempt} of job {job_id} is stale: attempt {current} has started")
        resumes = bool(await conn.fetchval(
            "SELECT s.checkpoint IS NOT NULL FROM jobs j JOIN sync_state s ON s.connection_pk = j.connection_pk"
            " AND s.sync_name = j.script_name AND s.variant = j.variant WHERE j.id = $1", job_id))
        await conn.execute("UPDATE jobs SET seen_attempt = $2 WHERE id = $1", job_id, attempt)
        await conn.execute("DELETE FROM job_seen_records WHERE job_id = $1 AND (NOT covered OR NOT $2)",
                           job_id, resumes)
        # An earlier job of this sync that ended without success left its checkpoint's covered rows: resuming from
        # that checkpoint, this job takes them over; starting over, they go.
        earlier = ("SELECT e.id FROM jobs j JOIN jobs e ON e.connection_pk = j.connection_pk"
                   " AND e.script_name = j.script_name AND e.variant = j.variant AND e.kind = 'sync'"
                   " AND e.id < j.id AND e.status <> 'running' AND e.id > coalesce((SELECT s.last_job_id"
                   " FROM sync_state s WHERE s.connection_pk = j.connection_pk AND s.sync_name = j.script_name"
                   " AND s.variant = j.variant), 0) WHERE j.id = $1")  # since the last success: those have none
        if resumes:
            await conn.execute(
                "INSERT INTO job_seen_records (job_id, model, external_id, attempt, covered)"
                f" SELECT $1, model, external_id, $2, true FROM job_seen_records WHERE job_id IN ({earlier})"
                " ON CONFLICT DO NOTHING", job_id, attempt)
        await conn.execute(f"DELETE FROM job_seen_records WHERE job_id IN ({earlier})", job_id)
    return resumes


async def cover_seen(conn: asyncpg.Connection, job_id: int, attempt: int) -> bool:
    """A checkpoint is being saved or cleared (call it in that transaction): what `attempt` has seen so far is
    covered by it, so an attempt resuming from it keeps those rows. False for a stale attempt, whose
    checkpoint must not replace the current attempt's."""
    current = await conn.fetchval("SELECT seen_attempt FROM jobs WHERE id = $1 FOR SHARE", job_id)
    if current is None or current > attempt:
        return False
    await conn.execute("UPDATE job_seen_records SET covered = true WHERE job_id = $1 AND attempt = $2"
                       " AND NOT covered", job_id, attempt)
    return True


async def current_attempt(conn: asyncpg.Connection, job_id: int) -> int:
    """The attempt of the job's run that began last (0: none has begun through `begin_attempt`)."""
    return await conn.fetchval("SELECT seen_attempt FROM jobs WHERE id = $1", job_id) or 0


async def recount(conn: asyncpg.Connection, job_id: int, connection_pk: int, variant: str) -> None:
    """Make a retried job's counts its net change: each record it changed compared with what it was before the
    job first changed it (`job_prior_records`; none: the job created it). A record a dead attempt added and the
    retry found unchanged counts as added once; one it added and the provider then deleted counts nowhere."""
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT s.model,"
            " count(*) FILTER (WHERE r.deleted_at IS NULL AND NOT coalesce(p.prior_live, false)) AS added,"
            " count(*) FILTER (WHERE r.deleted_at IS NULL AND p.prior_live"
            "  AND p.prior_hash IS DISTINCT FROM r.data_hash) AS updated,"
            " count(*) FILTER (WHERE r.deleted_at IS NOT NULL AND p.prior_live) AS deleted"
            " FROM record_scopes s JOIN records r ON r.scope_id = s.id"
            " LEFT JOIN job_prior_records p ON p.job_id = $1 AND p.scope_id = r.scope_id"
            "  AND p.external_id = r.external_id"
            " WHERE s.connection_pk = $2 AND s.variant = $3 AND r.job_id = $1 GROUP BY s.model",
            job_id, connection_pk, variant)
        await conn.execute("DELETE FROM job_counts WHERE job_id = $1", job_id)
        for r in rows:
            await _add_counts(conn, job_id, r["model"],
                              WriteResult(added=r["added"], updated=r["updated"], deleted=r["deleted"]))


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
    records_bytes: bytes  # the page's records as JSON objects joined by commas, as stored (`records.body`)
    count: int
    next_cursor: str | None

    def to_json(self) -> bytes:
        """The response body, assembled without parsing or re-encoding a single record."""
        return b"".join([b'{"records":[', self.records_bytes, b'],"next_cursor":',
                         orjson.dumps(self.next_cursor), b"}"])

    def records(self) -> list[dict[str, Any]]:
        return orjson.loads(b"[" + self.records_bytes + b"]")

    @property
    def records_json(self) -> list[str]:
        """One JSON text per record (parses the page: for small pages, e.g. the dashboard's)."""
        return [orjson.dumps(r).decode() for r in self.records()]


# Each row's `body` is its response JSON, rendered when it was written (migration 0015). A page is those bodies
# in cursor order, copied out with binary COPY (each row: a field count, the body's length, its bytes; nothing
# escaped, so PostgreSQL spends half the CPU of the text format on it), so PostgreSQL streams while the caller writes.
# Pages walk the partial (scope_id, cursor) index of one scope (the literal `cursor > 0` lets the planner use
# it): other connections' rows are never read.
_PAGE_COPY = ("SELECT body FROM records WHERE scope_id = {scope} AND cursor > 0 AND cursor > {after}{extra}"
              " ORDER BY cursor LIMIT {limit}")  # copied out by COPY (...) TO STDOUT
# With `ids` (at most a few hundred), probe the primary key instead; `cursor + 0` keeps the cursor index (which
# would walk the whole scope) out of reach.
_PAGE_IDS = ("SELECT body FROM records WHERE scope_id = $1 AND external_id = any($2::text[]) AND cursor + 0 > $3"
             " AND ($4::timestamptz IS NULL OR last_modified_at >= $4)"
             " AND ($5::text[] IS NULL OR last_action = any($5)) ORDER BY cursor LIMIT $6")
_CURSOR_KEY = b'"cursor":"'
CHUNK_BYTES = 64 * 1024  # COPY output that arrives in smaller pieces is gathered up to this before a write


class _Chunker:
    """COPY's binary output to comma-joined records, passed on as it arrives (pieces smaller than `chunk_bytes`
    gathered first); each piece's bodies are cut out of it and joined, one copy."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]], chunk_bytes: int) -> None:
        self.out, self.chunk_bytes = write, chunk_bytes
        self.held = b""  # records not passed on yet, joined by commas (after a leading one if a record was)
        self.count = 0  # set by the caller: COPY's row count, or the rows given
        self.tail = b""  # the end of the last record, where its cursor is
        self.header = True  # the binary header (signature, flags, extension) is still to be skipped
        self.comma = False  # a record was taken: the next one starts with a comma

    async def copied(self, piece: bytes | bytearray) -> None:
        """Whole messages of binary COPY output: after the header, each row is a field count (1), the body's
        length and the body; the trailer is a field count of -1."""
        view, at, end = memoryview(piece), 0, len(piece)
        if self.header:
            at, self.header = 19 + _LEN.unpack_from(piece, 15)[0], False
        parts: list[Any] = [self.held] if self.held else ([b""] if self.comma else [])
        first, unpack, add = len(parts), _LEN.unpack_from, parts.append
        while at < end and piece[at] != 0xFF:  # 0xFFFF: the trailer
            size = unpack(piece, at + 2)[0]
            add(view[at + 6:at + 6 + size])
            at += 6 + size
        if len(parts) == first:
            return
        data = b",".join(parts)
        self.comma, self.tail = True, data[-64:]
        if len(data) >= self.chunk_bytes:
            self.held = b""
            await self.out(data)
        else:
            self.held = data

    async def rows(self, bodies: list[str]) -> None:
        """Bodies as stored."""
        if bodies:
            self.held = ",".join(bodies).encode()
            self.count, self.tail = len(bodies), self.held[-64:]

    async def flush(self) -> None:
        """Pass on what is held."""
        if self.held:
            await self.out(self.held)
            self.held = b""

    def last_cursor(self) -> str:
        at = self.tail.rindex(_CURSOR_KEY) + len(_CURSOR_KEY)
        return self.tail[at:self.tail.index(b'"', at)].decode()


async def stream_page(
    conn: asyncpg.Connection, scope: Scope, write: Callable[[bytes], Awaitable[None]], *, cursor: str | None = None,
    limit: int = 100, modified_after: datetime | None = None, actions: Sequence[str] | None = None,
    ids: Sequence[str] | None = None, chunk_bytes: int = CHUNK_BYTES,
) -> tuple[int, str | None]:
    """Pass a page's records to `write` in chunks as PostgreSQL sends them (records joined by commas; every chunk
    after the first starts with a comma; pieces under `chunk_bytes` gathered first); return (count, next_cursor).

    Nothing is parsed or re-encoded and at most one chunk is held: the caller streams the response."""
    after = decode_cursor(cursor) if cursor else 0
    last_actions = [a.upper() for a in actions] if actions else None
    if last_actions and any(a not in ("ADDED", "UPDATED", "DELETED") for a in last_actions):
        raise InvalidInputError(f"unknown record action in {actions!r}", parameter="filter")
    chunker = _Chunker(write, chunk_bytes)
    scope_id = await conn.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1 AND model = $2"
                                   " AND variant = $3", scope.connection_pk, scope.model, scope.variant)
    if scope_id is None:
        return 0, None
    if ids:
        rows = await conn.fetch(_PAGE_IDS, scope_id, [str(i) for i in ids], after, modified_after, last_actions,
                                limit)
        await chunker.rows([r[0] for r in rows])
    else:
        extra = ""
        if modified_after is not None:  # a datetime: its ISO text is digits and -:+.T only
            since = modified_after if modified_after.tzinfo else modified_after.replace(tzinfo=UTC)
            extra += f" AND last_modified_at >= '{since.isoformat()}'::timestamptz"
        if last_actions:
            extra += " AND last_action IN (" + ", ".join(f"'{a}'" for a in last_actions) + ")"
        # Walk the index in cursor order: with stale statistics the planner may otherwise collect the whole scope
        # with a bitmap scan and sort it, once per page.
        async with conn.transaction(readonly=True):
            await conn.execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
            status = await conn.copy_from_query(
                _PAGE_COPY.format(scope=int(scope_id), after=int(after), extra=extra, limit=int(limit)),
                output=chunker.copied, format="binary")
        chunker.count = int(status.rsplit(" ", 1)[-1])  # "COPY <rows>": no need to count the newlines
    await chunker.flush()
    n = chunker.count
    return n, (chunker.last_cursor() if n and n == limit else None)


async def read_page(
    conn: asyncpg.Connection, scope: Scope, *, cursor: str | None = None, limit: int = 100,
    modified_after: datetime | None = None, actions: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> Page:
    """One page, whole in memory (the dashboard, the unified API); GET /records streams (`stream_page`)."""
    parts: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        parts.append(chunk)
    n, next_cursor = await stream_page(conn, scope, keep, cursor=cursor, limit=limit, modified_after=modified_after,
                                       actions=actions, ids=ids)
    return Page(b"".join(parts), n, next_cursor)


async def count(conn: asyncpg.Connection, scope: Scope) -> int:
    return await conn.fetchval(
        f"SELECT count(*) FROM records WHERE scope_id = {_SCOPE_ID} AND deleted_at IS NULL",
        scope.connection_pk, scope.model, scope.variant)


async def delete_scopes(conn: asyncpg.Connection, connection_pk: int, models: list[str], variant: str) -> None:
    """Drop a connection's record scopes for these models and variant; their records go with them (the
    trigger of migration 0002)."""
    await conn.execute("DELETE FROM record_scopes WHERE connection_pk = $1 AND model = any($2::text[])"
                       " AND variant = $3", connection_pk, models, variant)


# ---- pruning and retention ---------------------------------------------------------------------

# A pruned record keeps its id and metadata (a tombstone for change tracking) and loses its payload; its cursor does
# not move (the consumer has read it already) and its hash is emptied, so the next save restores the payload
# (migration 0025 clears `pruned_at` then). Rows are taken oldest cursor first along the scope's cursor index.
_PRUNE_META = "records_meta(r.first_seen_at, r.last_modified_at, r.last_action, r.deleted_at, now(), r.cursor)"
_PRUNE = f"""
WITH todo AS (
    SELECT external_id FROM records
    WHERE scope_id = $1 AND cursor > 0 AND cursor <= $2 AND pruned_at IS NULL ORDER BY cursor LIMIT $3 + 1
), pruned AS (
    UPDATE records r SET pruned_at = now(), data_hash = '\\x'::bytea, meta_len = length({_PRUNE_META}),
        body = '{{"id":' || coalesce(((left(r.body, -r.meta_len) || '}}')::jsonb -> 'id')::text,
                                     to_json(r.external_id)::text) || {_PRUNE_META}
    FROM (SELECT external_id FROM todo LIMIT $3) t
    WHERE r.scope_id = $1 AND r.external_id = t.external_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM pruned) AS count, (SELECT count(*) FROM todo) > $3 AS has_more
"""


async def prune(conn: asyncpg.Connection, scope: Scope, until_cursor: int, *, limit: int) -> tuple[int, bool]:
    """Nango's prune: drop the payload of up to `limit` records with a cursor up to and including
    `until_cursor`; returns how many and whether more remain. Never takes the scope's lock: a save that
    races it either restores the payload or leaves the tombstone, both consistent."""
    scope_id = await conn.fetchval(f"SELECT {_SCOPE_ID}", scope.connection_pk, scope.model, scope.variant)
    if scope_id is None:
        return 0, False
    row = await conn.fetchrow(_PRUNE, scope_id, until_cursor, limit)
    return row["count"], row["has_more"]


async def delete_expired(conn: asyncpg.Connection, environment_id: int, days: int, *, limit: int) -> int:
    """Retention: delete up to `limit` of the environment's records soft-deleted more than `days` ago, by their
    primary keys (partial index of migration 0025); rows a writer holds are skipped, never waited for."""
    status = await conn.execute(
        "DELETE FROM records WHERE (scope_id, external_id) IN (SELECT scope_id, external_id FROM records"
        " WHERE environment_id = $1 AND deleted_at IS NOT NULL AND deleted_at < now() - make_interval(days => $2)"
        " LIMIT $3 FOR UPDATE SKIP LOCKED)", environment_id, days, limit)
    return int(status.split()[-1])
