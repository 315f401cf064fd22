"""Deletion detection and counts after a retried run (issue 23, point 1).

A retried run_sync_script reuses its job. What the run has seen must be exactly what the attempt that
completes saw, plus what the checkpoint it resumed from covers; the job's counts must be the net change
the provider's data implies, whatever dead attempts wrote. First against the store, then through the
real stack with the worker killed mid-run.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from typing import Any

import asyncpg
import pytest

from orchestrator.errors import TransientError
from orchestrator.runs.sinks import DatabaseSink
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records
from tests.conftest import eventually, fresh_connection, setup_github


async def _scope(pool: asyncpg.Pool) -> records.Scope:
    env_id, pk = await fresh_connection(pool, "rd")
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


async def test_a_job_resuming_from_a_failed_jobs_checkpoint_keeps_what_it_covers(pool: asyncpg.Pool) -> None:
    """The checkpoint outlives a failed job; the next job that resumes from it has what it covers as seen."""
    scope = await _scope(pool)
    await _baseline(pool, scope, range(10))
    failed = await _job(pool, scope)
    sink = DatabaseSink(pool, environment_id=scope.environment_id, connection_pk=scope.connection_pk, job_id=failed,
                        sync_name="issues", attempt=1)
    async with pool.acquire() as conn:
        await records.begin_attempt(conn, failed, 1)
    await sink.save("Issue", [issue(i) for i in range(5)], track_seen=True)
    await sink.set_checkpoint({"page": 1})
    await sink.save("Issue", [issue(i) for i in range(5, 8)], track_seen=True)
    async with pool.acquire() as conn:
        await jobs_repo.close_job(conn, failed, "failed", error="the script raised")
        assert await conn.fetchval("SELECT count(*) FROM job_seen_records WHERE job_id = $1", failed) == 5
    nxt = await _job(pool, scope)
    async with pool.acquire() as conn:
        assert await records.begin_attempt(conn, nxt, 1) is True
        assert await conn.fetchval("SELECT count(*) FROM job_seen_records WHERE job_id = $1", failed) == 0
        await records.batch_save(conn, scope, [issue(i) for i in [5, 8, 9]], job_id=nxt, track_seen=True, attempt=1)
    counts = await _finish(pool, scope, nxt)
    assert await _live(pool, scope) == {"0", "1", "2", "3", "4", "5", "8", "9"}  # 6 and 7 vanished upstream
    assert counts == {"Issue": {"added": 0, "updated": 0, "deleted": 2}}

    # Without a checkpoint (cleared, or a reset), a failed job's covered rows go with the next job's start.
    again = await _job(pool, scope)
    sink = DatabaseSink(pool, environment_id=scope.environment_id, connection_pk=scope.connection_pk, job_id=again,
                        sync_name="issues", attempt=1)
    async with pool.acquire() as conn:
        await records.begin_attempt(conn, again, 1)
    await sink.save("Issue", [issue(0)], track_seen=True)
    await sink.set_checkpoint({"page": 1})
    async with pool.acquire() as conn:
        await jobs_repo.close_job(conn, again, "failed", error="x")
    await sink.set_checkpoint(None)
    last = await _job(pool, scope)
    async with pool.acquire() as conn:
        assert await records.begin_attempt(conn, last, 1) is False
        assert await conn.fetchval("SELECT count(*) FROM job_seen_records WHERE job_id = ANY($1::bigint[])",
                                   [again, last]) == 0


async def test_a_first_attempt_keeps_its_counts_as_kept(pool: asyncpg.Pool) -> None:
    """No retry: no recount, the counts are those kept per write (a record saved then deleted counts twice)."""
    scope = await _scope(pool)
    job = await _job(pool, scope)
    async with pool.acquire() as conn:
        await records.begin_attempt(conn, job, 1)
        await records.batch_save(conn, scope, [issue(1), issue(2)], job_id=job, track_seen=True, attempt=1)
        await records.batch_delete(conn, scope, [{"id": "2"}], job_id=job)
    assert await _finish(pool, scope, job) == {"Issue": {"added": 2, "updated": 0, "deleted": 1}}


# ---- through the real stack: deployed full sync with track_deletes, worker killed mid-run ----------------

ISSUES = 1500
PAGE = 100

# A full sync of the repository, one page at a time, slow enough to be killed mid-run. With CHECKPOINTS it
# saves a checkpoint after each page, a pause after the page's save, so a kill can land between the two.
# The pause is the connection's `pause` metadata (read once per attempt): only the attempt killed waits.
FULL_SYNC = '''
import asyncio

CHECKPOINTS = {checkpoints}


def to_issue(raw):
    return {{"id": str(raw["id"]), "number": raw["number"], "title": raw["title"], "body": raw.get("body"),
            "state": raw["state"], "url": raw["html_url"], "author": (raw.get("user") or {{}}).get("login"),
            "labels": [label["name"] for label in raw.get("labels", [])], "created_at": raw["created_at"],
            "updated_at": raw["updated_at"], "closed_at": raw.get("closed_at")}}


async def fetch_data(nango):
    metadata = await nango.get_metadata()
    repo, pause = metadata["repo"], metadata.get("pause", 0.3)
    page = ((await nango.get_checkpoint()) or {{}}).get("page", 1) if CHECKPOINTS else 1
    while True:
        resp = await nango.get(f"/repos/{{repo}}/issues", params={{"state": "all", "sort": "created",
                               "direction": "asc", "per_page": {page_size}, "page": page}}, retries=5)
        if not resp.data:
            return
        await nango.batch_save([to_issue(raw) for raw in resp.data], "GithubIssue")
        await asyncio.sleep(pause)
        page += 1
        if CHECKPOINTS:
            await nango.save_checkpoint({{"page": page}})


async def on_webhook(nango, payload):
    pass
'''


def full_sync_folder(tmp_path: Any, *, checkpoints: bool) -> Any:
    from tests.conftest import EXAMPLES

    folder = tmp_path / ("ints-cp" if checkpoints else "ints")
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(FULL_SYNC.format(checkpoints=checkpoints, page_size=PAGE))
    text = (folder / "nango.yaml").read_text()
    assert "        sync_type: incremental\n" in text
    (folder / "nango.yaml").write_text(text.replace(
        "        sync_type: incremental\n",
        "        sync_type: full\n        track_deletes: true\n        auto_start: false\n"))
    return folder


async def _run_job(stack: Any, gh: Any, prefix: str) -> tuple[Any, int]:
    """Start one run on the test's own task queue; the job it opened."""
    from tests.test_faults import _start_run

    async with stack.pool.acquire() as conn:
        before = await conn.fetchval("SELECT coalesce(max(j.id), 0) FROM jobs j JOIN environments e"
                                     " ON e.id = j.environment_id WHERE e.name = $1", gh.env)
    handle = await _start_run(stack, gh, prefix)

    async def opened() -> int:
        async with stack.pool.acquire() as conn:
            job = await conn.fetchval("SELECT j.id FROM jobs j JOIN environments e ON e.id = j.environment_id"
                                      " WHERE e.name = $1 AND j.id > $2 AND j.kind = 'sync'", gh.env, before)
        assert job, "no job yet"
        return job
    return handle, await eventually(opened, timeout=30)


async def _live_ids(stack: Any, gh: Any) -> set[str]:
    async with stack.pool.acquire() as conn:
        found = await conn.fetch("SELECT r.external_id FROM records r JOIN environments e ON e.id = r.environment_id"
                                 " WHERE e.name = $1 AND r.deleted_at IS NULL", gh.env)
    return {r["external_id"] for r in found}


def _provider(stack: Any, gh: Any) -> dict[str, dict[str, Any]]:
    """The provider's truth: id -> (number, title) of every issue it has now."""
    return {str(i.id): {"number": i.number, "title": i.title} for i in stack.demo.repo(gh.repo).issues.values()}


async def _job_counts(stack: Any, job: int) -> dict[str, int]:
    async with stack.pool.acquire() as conn:
        counts = await jobs_repo.counts(conn, job)
    return counts.get("GithubIssue", {"added": 0, "updated": 0, "deleted": 0})


async def _seen_attempt(stack: Any, job: int) -> int:
    async with stack.pool.acquire() as conn:
        return await conn.fetchval("SELECT seen_attempt FROM jobs WHERE id = $1", job)


async def test_worker_killed_then_records_deleted_upstream_the_retry_deletes_them(
        stack: Any, tmp_path: Any) -> None:
    from tests.test_faults import WorkerProcess, set_pause

    gh = await setup_github(stack, issues=ISSUES, folder=full_sync_folder(tmp_path, checkpoints=False))
    prefix = f"rd{uuid.uuid4().hex[:6]}-"
    first = WorkerProcess(stack, prefix, tmp_path)
    await first.start()
    second: WorkerProcess | None = None
    try:
        await set_pause(stack, gh, 0)
        handle, _ = await _run_job(stack, gh, prefix)  # the baseline: every issue live
        assert (await asyncio.wait_for(handle.result(), 90))["status"] == "success"
        baseline = _provider(stack, gh)
        assert await _live_ids(stack, gh) == set(baseline)

        # Between runs upstream: 30 issues deleted, 40 edited, 25 new.
        for n in range(1001, 1031):
            stack.demo.delete_issue(gh.repo, n)
        for n in range(1, 41):
            stack.demo.update_issue(gh.repo, n, title=f"Edited {n}")
        for _ in range(25):
            stack.demo.add_issue(gh.repo, title="new")

        await set_pause(stack, gh, 0.3)  # slow enough to be killed mid-run
        handle, job = await _run_job(stack, gh, prefix)

        async def saved_some() -> None:
            async with stack.pool.acquire() as conn:
                n = await conn.fetchval("SELECT count(*) FROM job_seen_records WHERE job_id = $1", job)
            assert n >= 4 * PAGE, n
        await eventually(saved_some, timeout=60, interval=0.05)
        await first.kill()
        async with stack.pool.acquire() as conn:
            dead_saw = {r["external_id"] for r in await conn.fetch(
                "SELECT external_id FROM job_seen_records WHERE job_id = $1", job)}
        # Upstream deletes issues the dead attempt had already saved (some of them edited ones).
        gone = [n for n in range(21, 321, 2)]
        gone_ids = {str(stack.demo.repo(gh.repo).issues[n].id) for n in gone}
        assert gone_ids <= dead_saw
        for n in gone:
            stack.demo.delete_issue(gh.repo, n)
        await set_pause(stack, gh, 0)  # the retry need not be slow
        second = WorkerProcess(stack, prefix, tmp_path)
        await second.start()
        summary = await asyncio.wait_for(handle.result(), 120)
    finally:
        await first.stop()
        if second:
            await second.stop()
    assert summary["status"] == "success"
    assert await _seen_attempt(stack, job) >= 2  # the job was really retried
    truth = _provider(stack, gh)
    assert await _live_ids(stack, gh) == set(truth)
    expected = {"added": len(set(truth) - set(baseline)), "deleted": len(set(baseline) - set(truth)),
                "updated": sum(1 for i in set(truth) & set(baseline) if truth[i]["title"] != baseline[i]["title"])}
    assert expected == {"added": 25, "deleted": 30 + len(gone), "updated": 40 - 10}
    assert await _job_counts(stack, job) == expected
    assert summary["counts"]["GithubIssue"] == expected


async def test_worker_killed_after_a_checkpoint_the_resumed_retry_keeps_what_it_covers(
        stack: Any, tmp_path: Any) -> None:
    from tests.test_faults import WorkerProcess, set_pause

    gh = await setup_github(stack, issues=ISSUES, folder=full_sync_folder(tmp_path, checkpoints=True))
    prefix = f"rc{uuid.uuid4().hex[:6]}-"
    first = WorkerProcess(stack, prefix, tmp_path)
    await first.start()
    second: WorkerProcess | None = None
    try:
        await set_pause(stack, gh, 0)
        handle, _ = await _run_job(stack, gh, prefix)
        assert (await asyncio.wait_for(handle.result(), 90))["status"] == "success"
        baseline = _provider(stack, gh)
        for n in range(1, 11):  # edited before the run: the dead attempt saves them (covered by a checkpoint)
            stack.demo.update_issue(gh.repo, n, title=f"Edited {n}")

        await set_pause(stack, gh, 0.3)  # a window between each page's save and its checkpoint
        handle, job = await _run_job(stack, gh, prefix)

        async def between_save_and_checkpoint() -> int:
            async with stack.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM job_seen_records WHERE job_id = $1) AS seen,"
                    " (SELECT (checkpoint->>'page')::int FROM sync_state s JOIN jobs j ON j.connection_pk ="
                    "  s.connection_pk AND j.script_name = s.sync_name AND j.variant = s.variant WHERE j.id = $1)"
                    "  AS page", job)
            # pages 1 .. page-1 are covered; page `page` is saved, its checkpoint not yet
            assert row["page"] and row["page"] >= 3 and row["seen"] == row["page"] * PAGE, dict(row)
            return row["page"]
        page = await eventually(between_save_and_checkpoint, timeout=60, interval=0.02)
        await first.kill()
        async with stack.pool.acquire() as conn:
            covered = await conn.fetchval("SELECT count(*) FROM job_seen_records WHERE job_id = $1 AND covered", job)
        assert covered == (page - 1) * PAGE
        # Upstream deletes 20 issues of the page the dead attempt saved after its last checkpoint.
        gone = list(range((page - 1) * PAGE + 1, (page - 1) * PAGE + 21))
        for n in gone:
            stack.demo.delete_issue(gh.repo, n)
        await set_pause(stack, gh, 0)  # the retry need not be slow
        second = WorkerProcess(stack, prefix, tmp_path)
        await second.start()
        summary = await asyncio.wait_for(handle.result(), 120)
    finally:
        await first.stop()
        if second:
            await second.stop()
    assert summary["status"] == "success"
    assert await _seen_attempt(stack, job) >= 2
    truth = _provider(stack, gh)
    assert await _live_ids(stack, gh) == set(truth)  # the covered pages stay, the 20 are gone
    assert await _job_counts(stack, job) == {"added": 0, "updated": 10, "deleted": 20}
    assert len(baseline) - len(truth) == 20
