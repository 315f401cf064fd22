"""Deletion detection and counts after a retried run (issue 23, point 1).

A retried run_sync_script reuses its job. What the run has seen must be exactly what the attempt that
completes saw, plus what the checkpoint it resumed from covers; the job's counts must be the net change
the provider's data implies, whatever dead attempts wrote. First against the store, then through the
real stack with the worker killed mid-run.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from orchestrator.errors import TransientError
from orchestrator.runs.sinks import DatabaseSink
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records


async def _scope(pool: asyncpg.Pool) -> records.Scope:
    async with pool.acquire() as conn:
        env_id = await conn.fetchval(
            "INSERT INTO environments (name, secret_key_hash) VALUES ($1, $2) RETURNING id",
            "rd-" + uuid.uuid4().hex[:10], uuid.uuid4().hex)
        integ = await conn.fetchval(
            "INSERT INTO integrations (environment_id, unique_key, provider) VALUES ($1, 'github', 'github')"
            " RETURNING id", env_id)
        pk = await conn.fetchval(
            "INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
            " VALUES ($1, $2, 'c1', '\\x00') RETURNING id", env_id, integ)
    return records.Scope(env_id, pk, "Issue")


async def _job(pool: asyncpg.Pool, scope: records.Scope) -> int:
    async with pool.acquire() as conn:
        return await jobs_repo.open_job(conn, environment_id=scope.environment_id, connection_pk=scope.connection_pk,
                                        script_name="issues", kind="sync", workflow_id=uuid.uuid4().hex, run_id="r")


def issue(i: int, title: str = "t") -> dict[str, Any]:
    return {"id": str(i), "title": title}


async def _baseline(pool: asyncpg.Pool, scope: records.Scope, ids: range) -> None:
    """A successful earlier run left these records live."""
    job = await _job(pool, scope)
    async with pool.acquire() as conn:
        await records.begin_attempt(conn, job, 1)
        await records.batch_save(conn, scope, [issue(i) for i in ids], job_id=job, track_seen=True, attempt=1)
        await jobs_repo.close_job(conn, job, "success")


async def _live(pool: asyncpg.Pool, scope: records.Scope) -> set[str]:
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT r.external_id FROM records r JOIN record_scopes s ON s.id = r.scope_id"
            " WHERE s.connection_pk = $1 AND s.model = $2 AND r.deleted_at IS NULL", scope.connection_pk, scope.model)
    return {r["external_id"] for r in found}


async def _finish(pool: asyncpg.Pool, scope: records.Scope, job: int) -> dict[str, dict[str, int]]:
    """What finalize does on success: deletion detection, then (after a retry) the net counts."""
    async with pool.acquire() as conn:
        await records.delete_unseen(conn, scope, job)
        assert await records.delete_unseen(conn, scope, job) == 0  # finalize retried: nothing more
        if await records.current_attempt(conn, job) > 1:
            await records.recount(conn, job, scope.connection_pk, scope.variant)
            await records.recount(conn, job, scope.connection_pk, scope.variant)  # idempotent
        counts = await jobs_repo.counts(conn, job)
        await jobs_repo.close_job(conn, job, "success")
    return counts


async def test_a_retry_without_checkpoint_sees_only_what_it_saved(pool: asyncpg.Pool) -> None:
    scope = await _scope(pool)
    await _baseline(pool, scope, range(10))
    job = await _job(pool, scope)
    async with pool.acquire() as conn:
        assert await records.begin_attempt(conn, job, 1) is False  # no checkpoint: starts empty
        # Attempt 1 saves 0-7 (3 changed upstream) and a new 10, then its worker dies.
        await records.batch_save(conn, scope, [issue(i, "new" if i == 3 else "t") for i in [*range(8), 10]],
                                 job_id=job, track_seen=True, attempt=1)
        # Upstream deletes 5, 6 (which existed) and 10 (which the dead attempt added).
        assert await records.begin_attempt(conn, job, 2) is False
        assert await conn.fetchval("SELECT count(*) FROM job_seen_records WHERE job_id = $1", job) == 0
        provider = [0, 1, 2, 3, 4, 7, 8, 9, 11]
        await records.batch_save(conn, scope, [issue(i, "new" if i == 3 else "t") for i in provider],
                                 job_id=job, track_seen=True, attempt=2)
    counts = await _finish(pool, scope, job)
    assert await _live(pool, scope) == {str(i) for i in provider}
    # 11 added, 3 updated (by the dead attempt: the retry wrote it unchanged), 5 and 6 deleted; 10 nowhere.
    assert counts == {"Issue": {"added": 1, "updated": 1, "deleted": 2}}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM job_prior_records WHERE job_id = $1", job) == 0


async def test_a_retry_resuming_from_a_checkpoint_keeps_exactly_what_it_covers(pool: asyncpg.Pool) -> None:
    scope = await _scope(pool)
    await _baseline(pool, scope, range(10))
    job = await _job(pool, scope)
    sink1 = DatabaseSink(pool, environment_id=scope.environment_id, connection_pk=scope.connection_pk, job_id=job,
                         sync_name="issues", attempt=1)
    async with pool.acquire() as conn:
        assert await records.begin_attempt(conn, job, 1) is False
    # Attempt 1: page A (0-4, 3 changed), checkpoint, page B (5-7 and a new 10), then it dies.
    await sink1.save("Issue", [issue(i, "new" if i == 3 else "t") for i in range(5)], track_seen=True)
    await sink1.set_checkpoint({"page": 1})
    await sink1.save("Issue", [issue(i) for i in [5, 6, 7, 10]], track_seen=True)
    # Upstream deletes 2 (covered by the checkpoint), 6 and 10 (saved after it).
    async with pool.acquire() as conn:
        assert await records.begin_attempt(conn, job, 2) is True
        seen = {r["external_id"] for r in await conn.fetch(
            "SELECT external_id FROM job_seen_records WHERE job_id = $1", job)}
        assert seen == {"0", "1", "2", "3", "4"}  # exactly what the checkpoint covers
    sink2 = DatabaseSink(pool, environment_id=scope.environment_id, connection_pk=scope.connection_pk, job_id=job,
                         sync_name="issues", attempt=2)
    assert await sink2.get_checkpoint() == {"page": 1}
    await sink2.save("Issue", [issue(i) for i in [5, 7, 8, 9, 11]], track_seen=True)
    counts = await _finish(pool, scope, job)
    # 2 stays live: the checkpoint covers it and the next run's deletion detection will see it gone.
    assert await _live(pool, scope) == {"0", "1", "2", "3", "4", "5", "7", "8", "9", "11"}
    assert counts == {"Issue": {"added": 1, "updated": 1, "deleted": 1}}


async def test_a_stale_attempt_neither_counts_as_seen_nor_moves_the_checkpoint(pool: asyncpg.Pool) -> None:
    scope = await _scope(pool)
    await _baseline(pool, scope, range(4))
    job = await _job(pool, scope)
    stale = DatabaseSink(pool, environment_id=scope.environment_id, connection_pk=scope.connection_pk, job_id=job,
                         sync_name="issues", attempt=1)
    async with pool.acquire() as conn:
        await records.begin_attempt(conn, job, 1)
        await records.begin_attempt(conn, job, 2)  # attempt 1's worker froze; attempt 2 started elsewhere
        with pytest.raises(TransientError):
            await records.begin_attempt(conn, job, 1)
    await stale.save("Issue", [issue(i) for i in range(4)], track_seen=True)  # the frozen worker thaws
    with pytest.raises(TransientError, match="stale"):
        await stale.set_checkpoint({"page": 9})
    assert await stale.get_checkpoint() is None
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(0), issue(1)], job_id=job, track_seen=True, attempt=2)
    counts = await _finish(pool, scope, job)
    assert await _live(pool, scope) == {"0", "1"}
    assert counts == {"Issue": {"added": 0, "updated": 0, "deleted": 2}}


async def test_a_first_attempt_keeps_its_counts_as_kept(pool: asyncpg.Pool) -> None:
    """No retry: no recount, the counts are those kept per write (a record saved then deleted counts twice)."""
    scope = await _scope(pool)
    job = await _job(pool, scope)
    async with pool.acquire() as conn:
        await records.begin_attempt(conn, job, 1)
        await records.batch_save(conn, scope, [issue(1), issue(2)], job_id=job, track_seen=True, attempt=1)
        await records.batch_delete(conn, scope, [{"id": "2"}], job_id=job)
    assert await _finish(pool, scope, job) == {"Issue": {"added": 2, "updated": 0, "deleted": 1}}
