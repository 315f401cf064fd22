"""Migration 0015 on a database that already holds records: every record reads back byte for byte as the old
read path sent it (its metadata times in the one form of migration 0030), and the store keeps working on the
carried-over rows (unchanged saves stay no-ops)."""

from __future__ import annotations

import hashlib

import asyncpg
import orjson

from orchestrator.store import records
from orchestrator.store.migrate import _migration_files, migrate
from tests.test_jobs_migration import fresh_db  # noqa: F401  (a throw-away database per test)

# The page as the read path before 0015 rendered it (stored jsonb as text, metadata spliced in), with the times in
# the one form migration 0030 re-renders them in (UTC, milliseconds, `Z`).
_TIME = """coalesce('"' || to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null')"""
_OLD_PAGE = """
SELECT string_agg(substring(d FOR length(d) - 1) || convert_to(',"_nango_metadata":' || m || '}', 'UTF8'),
                  '\\x2c'::bytea ORDER BY cursor) AS body
FROM (SELECT convert_to(data::text, 'UTF8') AS d, cursor,
      '{"first_seen_at":' || """ + _TIME.format("first_seen_at") + """ || ',"last_modified_at":' || """ + (
    _TIME.format("last_modified_at")) + """
      || ',"last_action":"' || last_action || '","deleted_at":' || """ + _TIME.format("deleted_at") + """
      || ',"pruned_at":null,"cursor":"'
      || rtrim(translate(encode(convert_to('c' || cursor::text, 'UTF8'), 'base64'), '+/', '-_'), '=') || '"}' AS m
      FROM records WHERE scope_id = $1 ORDER BY cursor) AS page
"""

SAVED = [
    {"id": "a", "title": "plain", "n": 1},
    {"id": "b", "text": "quote \" backslash \\ tab \t newline \n é 😀 \u2028", "nested": {"z": [1, {"y": None}]}},
    {"id": 7, "empty": {}, "list": [], "big": 12345678901234567890, "f": 1.5},
    {"id": "gone", "x": 1},
]


async def test_0015_carries_records_over_byte_for_byte(fresh_db: asyncpg.Connection) -> None:  # noqa: F811
    conn = fresh_db
    await conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL"
                       " DEFAULT now())")
    for name, sql in _migration_files():  # the schema as it was before 0015
        if name >= "0015":
            break
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
    env = await conn.fetchval("INSERT INTO environments (name, secret_key_hash) VALUES ('e', 'h') RETURNING id")
    integ = await conn.fetchval("INSERT INTO integrations (environment_id, unique_key, provider) VALUES ($1, 'gh',"
                                " 'github') RETURNING id", env)
    pk = await conn.fetchval("INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
                             " VALUES ($1, $2, 'c1', '\\x00') RETURNING id", env, integ)
    scope_id = await conn.fetchval("INSERT INTO record_scopes (connection_pk, model, variant, environment_id)"
                                   " VALUES ($1, 'Issue', 'base', $2) RETURNING id", pk, env)
    for record in SAVED:  # as the store wrote them then: jsonb data, the hash of the sorted-key JSON
        body = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        await conn.execute(
            "INSERT INTO records (scope_id, environment_id, connection_pk, model, variant, external_id, data,"
            " data_hash, last_action) VALUES ($1, $2, $3, 'Issue', 'base', $4, $5::text::jsonb, $6, 'ADDED')",
            scope_id, env, pk, str(record["id"]), body.decode(), hashlib.sha256(body).digest())
    await conn.execute("UPDATE records SET deleted_at = now(), last_action = 'DELETED',"
                       " cursor = nextval('records_cursor_seq') WHERE external_id = 'gone'")
    before = await conn.fetchval(_OLD_PAGE, scope_id)

    assert await migrate(conn) == ["0015_record_bodies.sql"] + [
        n for n, _ in _migration_files() if n > "0015_record_bodies.sql"]
    scope = records.Scope(env, pk, "Issue")
    page = await records.read_page(conn, scope, limit=100)
    assert page.records_bytes == before and page.count == len(SAVED) and page.next_cursor is None
    assert await records.get_by_ids(conn, scope, ["a", "b", "7"]) == {str(r["id"]): r for r in SAVED[:3]}
    # the records_json view answers queries by hand, from the stored bodies
    assert await conn.fetchval("SELECT data FROM records_json WHERE external_id = 'b'") == SAVED[1]

    # carried-over rows keep their hashes: saving them again changes nothing and moves no cursor
    result = await records.batch_save(conn, scope, SAVED[:3])
    assert (result.added, result.updated) == (0, 0)
    assert (await records.read_page(conn, scope, limit=100)).records_bytes == before
    # and they update, delete and come back as any other row
    await records.batch_update(conn, scope, [{"id": "b", "nested": {"w": 2}}])
    await records.batch_delete(conn, scope, [{"id": "a"}])
    result = await records.batch_save(conn, scope, [SAVED[3]])
    assert (result.added, result.updated) == (1, 0)
    got = {r["id"]: r for r in (await records.read_page(conn, scope, limit=100)).records()}
    meta = {rid: r.pop("_nango_metadata") for rid, r in got.items()}
    assert got["b"]["nested"] == {"z": [1, {"y": None}], "w": 2} and meta["b"]["last_action"] == "UPDATED"
    assert meta["a"]["last_action"] == "DELETED" and meta["a"]["deleted_at"]
    assert meta["gone"]["last_action"] == "ADDED" and meta["gone"]["deleted_at"] is None
