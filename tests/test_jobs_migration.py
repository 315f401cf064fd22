"""Migration 0010 on a database that already holds jobs: `sync_jobs` becomes `jobs`, rows and foreign keys
survive, and the "type: message" errors of action/webhook/event jobs are split into error_type and error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orchestrator.store import jobs as jobs_repo
from orchestrator.store.migrate import _migration_files, migrate
from orchestrator.store.pool import init_connection


@pytest.fixture
async def fresh_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    name = "mig_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(database_url, database=name)
        await init_connection(conn)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()


async def test_0010_renames_sync_jobs_and_splits_error_types(fresh_db: asyncpg.Connection) -> None:
    conn = fresh_db
    await conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL"
                       " DEFAULT now())")
    for name, sql in _migration_files():  # the schema as it was before 0010
        if name >= "0010":
            break
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
    env = await conn.fetchval("INSERT INTO environments (name, secret_key_hash) VALUES ('e', 'h') RETURNING id")
    integ = await conn.fetchval("INSERT INTO integrations (environment_id, unique_key, provider) VALUES ($1, 'gh',"
                                " 'github') RETURNING id", env)
    pk = await conn.fetchval("INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
                             " VALUES ($1, $2, 'c1', '\\x00') RETURNING id", env, integ)
    legacy = {}
    for kind, error in [("action", "ValueError: bad: input"), ("webhook", "not_found: gone"),
                        ("event", "platform_error: "), ("sync", "ScriptError: boom"), ("action", None)]:
        legacy[(kind, error)] = await conn.fetchval(
            "INSERT INTO sync_jobs (environment_id, connection_pk, sync_name, kind, status, error)"
            " VALUES ($1, $2, 's', $3, 'failed', $4) RETURNING id", env, pk, kind, error)
    sync_job = legacy[("sync", "ScriptError: boom")]
    await conn.execute("INSERT INTO job_counts (job_id, model, added) VALUES ($1, 'M', 3)", sync_job)
    await conn.execute("INSERT INTO script_logs (job_id, level, message) VALUES ($1, 'info', 'hi')", sync_job)

    applied = await migrate(conn)
    assert applied[0].startswith("0010")

    # what remains of `sync_jobs` is a view for the previous release's pods during a rolling upgrade
    assert await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'sync_jobs'") == b"v"
    through_view = await conn.fetchval(
        "INSERT INTO sync_jobs (environment_id, connection_pk, sync_name, status) VALUES ($1, $2, 'old-pod',"
        " 'running') RETURNING id", env, pk)
    await conn.execute("UPDATE sync_jobs SET status = 'success', ended_at = now() WHERE id = $1", through_view)
    old_pod = await jobs_repo.get(conn, through_view)
    assert old_pod is not None and (old_pod.script_name, old_pod.kind, old_pod.status) == ("old-pod", "sync", "success")
    await conn.execute("DELETE FROM jobs WHERE id = $1", through_view)
    got = {(r["kind"], r["error_type"], r["error"]) for r in await conn.fetch(
        "SELECT kind, error_type, error FROM jobs WHERE script_name = 's'")}
    assert got == {("action", "ValueError", "bad: input"), ("webhook", "not_found", "gone"),
                   ("event", "platform_error", ""), ("sync", None, "ScriptError: boom"), ("action", None, None)}
    job = await jobs_repo.get(conn, legacy[("action", "ValueError: bad: input")])
    assert job is not None and job.error_text == "ValueError: bad: input"
    sync = await jobs_repo.get(conn, sync_job)
    assert sync is not None and sync.counts == {"M": {"added": 3, "updated": 0, "deleted": 0}}
    assert sync.error_text == "ScriptError: boom" and sync.script_name == "s"
    assert [e["message"] for e in await jobs_repo.logs(conn, sync_job)] == ["hi"]
    # the foreign keys still cascade, and new rows still get ids from the renamed sequence
    new_id = await jobs_repo.open_job(conn, environment_id=env, connection_pk=pk, script_name="a", kind="action")
    assert new_id > max(legacy.values())
    await conn.execute("DELETE FROM jobs WHERE id = $1", sync_job)
    assert await conn.fetchval("SELECT count(*) FROM job_counts WHERE job_id = $1", sync_job) == 0
    indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")}
    assert indexes == {"jobs_pkey", "jobs_conn_idx", "jobs_one_running_sync", "jobs_public_id", "jobs_env_kind_idx"}
