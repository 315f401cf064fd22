"""Issue 21: records' `_nango_metadata` times read in the one form of every timestamp the API shows (UTC,
milliseconds, `Z`), whichever writer stored them (each save path, update, delete, revive, prune, migration 0030's
re-render), and a rendered last_modified_at passed back as `modified_after` misses no record."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import orjson

from orchestrator.store import records
from orchestrator.store.migrate import _migration_files, migrate
from orchestrator.timestamps import iso
from tests.conftest import Stack
from tests.test_jobs_migration import fresh_db  # noqa: F401  (a throw-away database per test)
from tests.test_records_api import setup_connection

ONE_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TIMES = ("first_seen_at", "last_modified_at", "deleted_at", "pruned_at")


async def _read_all(stack: Stack, key: str, **kw: Any) -> list[dict[str, Any]]:
    async with stack.api(key) as api:
        return await api.all_records("github", "c1", "Issue", **kw)


async def _check_times(stack: Stack, key: str, scope: records.Scope) -> dict[str, dict[str, Any]]:
    """Every time of every record GET /records sends is in the one form and says what its row's column says."""
    got = {r["id"]: r["_nango_metadata"] for r in await _read_all(stack, key)}
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT r.external_id, r.first_seen_at, r.last_modified_at, r.deleted_at, r.pruned_at"
                                " FROM records r JOIN record_scopes s ON s.id = r.scope_id"
                                " WHERE s.connection_pk = $1 AND s.model = $2", scope.connection_pk, scope.model)
    assert set(got) == {r["external_id"] for r in rows}
    for row in rows:
        meta = got[row["external_id"]]
        for name in TIMES:
            assert meta[name] == iso(row[name]), (row["external_id"], name, meta[name])
            assert meta[name] is None or ONE_FORM.fullmatch(meta[name]), meta[name]
    return got


async def test_every_writer_renders_metadata_times_in_the_one_form(stack: Stack) -> None:
    key, scope = await setup_connection(stack)

    async def save(batch: list[dict[str, Any]]) -> records.WriteResult:
        async with stack.pool.acquire() as conn:
            return await records.batch_save(conn, scope, batch)

    assert (await save([{"id": str(i), "v": 0} for i in range(100)])).added == 100  # an empty scope: COPY
    await _check_times(stack, key, scope)
    assert (await save([{"id": str(i), "v": 0} for i in range(100, 200)])).added == 100  # new ids: COPY first
    assert (await save([{"id": str(i), "v": 1} for i in range(100)])).updated == 100  # mostly changed: direct
    assert (await save([{"id": str(i), "v": 1 if i > 4 else 2} for i in range(100)])).updated == 5  # looked up
    async with stack.pool.acquire() as conn:
        assert (await records.batch_update(conn, scope, [{"id": "7", "w": {"x": 1}}])).updated == 1
        assert (await records.batch_delete(conn, scope, [{"id": str(i)} for i in range(150, 200)])).deleted == 50
    meta = await _check_times(stack, key, scope)
    assert meta["150"]["deleted_at"] and meta["150"]["last_action"] == "DELETED"
    assert meta["7"]["last_action"] == "UPDATED" and meta["7"]["first_seen_at"] < meta["7"]["last_modified_at"]

    # revived: one record through the lookup path, fifty through the direct path
    assert (await save([{"id": "150", "v": 3}])).added == 1
    assert (await save([{"id": str(i), "v": 3} for i in range(151, 200)])).added == 49
    async with stack.api(key) as api:
        cursor = (await api.list_records("github", "c1", "Issue", limit=10))["records"][-1]["_nango_metadata"]["cursor"]
        assert (await api.prune_records("github", "c1", "Issue", cursor))["count"] == 10
    meta = await _check_times(stack, key, scope)
    assert sum(1 for m in meta.values() if m["pruned_at"]) == 10
    assert meta["150"]["last_action"] == "ADDED" and meta["150"]["deleted_at"] is None


async def test_a_rendered_last_modified_at_as_modified_after_misses_no_record(stack: Stack) -> None:
    key, scope = await setup_connection(stack)
    for start in range(0, 60, 10):  # six batches: six transactions, six now()s
        async with stack.pool.acquire() as conn:
            await records.batch_save(conn, scope, [{"id": str(i), "v": 0} for i in range(start, start + 10)])
            if start:
                await records.batch_delete(conn, scope, [{"id": str(start - 3)}])
    async with stack.pool.acquire() as conn:
        stored = {r["external_id"]: r["last_modified_at"] for r in await conn.fetch(
            "SELECT r.external_id, r.last_modified_at FROM records r JOIN record_scopes s ON s.id = r.scope_id"
            " WHERE s.connection_pk = $1", scope.connection_pk)}
    listed = await _read_all(stack, key)
    for record in listed:
        rendered = record["_nango_metadata"]["last_modified_at"]
        at_or_after = {rid for rid, t in stored.items() if t >= stored[record["id"]]}
        got = [r["id"] for r in await _read_all(stack, key, modified_after=rendered)]
        # nothing modified at or after the record is missed (the record itself included); what else comes back
        # was modified within the same millisecond, before it: a repeat of the boundary, never an older change
        assert at_or_after <= set(got) and len(got) == len(set(got)), rendered
        assert all(iso(stored[rid]) == rendered or stored[rid] >= stored[record["id"]] for rid in got)
        async with stack.api(key) as api:  # the same through the ids path
            page = await api.list_records("github", "c1", "Issue", modified_after=rendered, ids=sorted(stored))
        assert at_or_after <= {r["id"] for r in page["records"]}


# A connection's record scope in a new database.
_SCOPE = """
WITH e AS (INSERT INTO environments (name, secret_key_hash) VALUES ('e', 'h') RETURNING id),
i AS (INSERT INTO integrations (environment_id, unique_key, provider) SELECT id, 'gh', 'github' FROM e
      RETURNING id, environment_id),
c AS (INSERT INTO connections (environment_id, integration_id, connection_id, credentials)
      SELECT environment_id, id, 'c1', '\\x00' FROM i RETURNING id, environment_id),
s AS (INSERT INTO record_scopes (connection_pk, model, variant, environment_id)
      SELECT id, 'Issue', 'base', environment_id FROM c RETURNING id, connection_pk, environment_id)
SELECT environment_id, connection_pk, id FROM s
"""
_ROW = """
INSERT INTO records (scope_id, environment_id, connection_pk, model, variant, external_id, cursor, body, meta_len,
                     data_hash, last_action, first_seen_at, last_modified_at, deleted_at, pruned_at)
VALUES ($1, $2, $3, 'Issue', 'base', $4, $5, $6, $7, '\\x01', $8, $9::text::timestamptz, $10::text::timestamptz,
        $11::text::timestamptz, $12::text::timestamptz)
"""


def _old_meta(first: str, last: str, action: str, deleted: str | None, pruned: str | None, cursor: int) -> str:
    """`_nango_metadata` as releases before migration 0030 rendered it (to_json: `+00:00`, up to six digits)."""
    return (',"_nango_metadata":' + orjson.dumps({"first_seen_at": first, "last_modified_at": last,
                                                   "last_action": action, "deleted_at": deleted, "pruned_at": pruned,
                                                   "cursor": records.encode_cursor(cursor)}).decode() + "}")


async def test_0030_rerenders_stored_metadata_and_nothing_else(fresh_db: asyncpg.Connection) -> None:  # noqa: F811
    """The release's migration re-renders old rows (here written after it, as a pod of the previous release would
    during a rolling upgrade, so that its statement is run again as its header says)."""
    conn = fresh_db
    await migrate(conn)
    env, pk, scope_id = await conn.fetchrow(_SCOPE)
    first, last = "2026-03-01T10:00:00.1234+00:00", "2026-03-01T10:00:00.1249+00:00"
    saved = {"live": '{"id":"live","s":"\\"Z\\" +00:00 é"}', "gone": '{"id":"gone","n":1}',
             "pruned": '{"id":"pruned"}'}
    rows = [("live", "ADDED", None, None), ("gone", "DELETED", "2026-03-02T00:00:00+00:00", None),
            ("pruned", "ADDED", None, "2026-03-03T12:00:00.999999+00:00")]
    for cursor, (rid, action, deleted, pruned) in enumerate(rows, start=101):
        meta = _old_meta(first, last, action, deleted, pruned, cursor)
        await conn.execute(_ROW, scope_id, env, pk, rid, cursor, saved[rid][:-1] + meta, len(meta), action, first,
                           last, deleted, pruned)
    before = {r["external_id"]: r for r in await conn.fetch("SELECT * FROM records")}
    assert orjson.loads(before["gone"]["body"])["_nango_metadata"]["deleted_at"] == "2026-03-02T00:00:00+00:00"

    await conn.execute(dict(_migration_files())["0030_record_times.sql"])
    after = {r["external_id"]: r for r in await conn.fetch("SELECT * FROM records")}
    for rid, row in after.items():
        old = before[rid]
        assert {k: v for k, v in row.items() if k not in ("body", "meta_len")} == {
            k: v for k, v in old.items() if k not in ("body", "meta_len")}  # cursor, times, action untouched
        assert row["body"][:-row["meta_len"]] == old["body"][:-old["meta_len"]] == saved[rid][:-1]
        meta = orjson.loads(row["body"])["_nango_metadata"]
        assert {k: meta[k] for k in TIMES} == {k: iso(row[k]) for k in TIMES}
        assert meta["cursor"] == records.encode_cursor(row["cursor"]) and meta["last_action"] == row["last_action"]
    live, gone, pruned = (orjson.loads(after[rid]["body"])["_nango_metadata"] for rid in ("live", "gone", "pruned"))
    assert (live["first_seen_at"], live["last_modified_at"]) == ("2026-03-01T10:00:00.123Z", "2026-03-01T10:00:00.124Z")
    assert gone["deleted_at"] == "2026-03-02T00:00:00.000Z" and pruned["pruned_at"] == "2026-03-03T12:00:00.999Z"
    page = await records.read_page(conn, records.Scope(env, pk, "Issue"), limit=10)
    assert [r["id"] for r in page.records()] == ["live", "gone", "pruned"] and page.records_bytes.count(b"+00:00") == 1
