"""Faults through the real stack: a worker killed mid-sync, PostgreSQL restarted mid-run, the bundle
store unreachable, a pause during a run. Records must come out exact: none lost, none twice."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle

from orchestrator.devstack.postgres import EmbeddedPostgres
from orchestrator.temporal.types import SyncInput
from tests.conftest import EXAMPLES, GithubSetup, Stack, eventually, setup_github

PAGES = 20
PER_PAGE = 50

# A slow, resumable sync: one page per checkpoint, deterministic ids. Its pause per page is the connection's
# `pause` metadata (read once per attempt): a test slows only the attempt it interrupts (see `set_pause`).
SLOW_SYNC = f'''
import asyncio


async def fetch_data(nango):
    pause = (await nango.get_metadata()).get("pause", 0.25)
    start = ((await nango.get_checkpoint()) or {{}}).get("page", 0)
    for page in range(start, {PAGES}):
        batch = [{{"id": f"r{{page}}-{{i}}", "number": page * {PER_PAGE} + i, "title": "t", "body": None,
                  "state": "open", "url": "u", "author": None, "labels": [], "created_at": "c",
                  "updated_at": "u", "closed_at": None}} for i in range({PER_PAGE})]
        await nango.batch_save(batch, "GithubIssue")
        await nango.save_checkpoint({{"page": page + 1}})
        await asyncio.sleep(pause)


async def on_webhook(nango, payload):
    pass
'''


def slow_folder(tmp_path: Path, *, auto_start: bool) -> Path:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(SLOW_SYNC)
    if not auto_start:
        text = (folder / "nango.yaml").read_text()
        (folder / "nango.yaml").write_text(text.replace("        sync_type: incremental\n",
                                                        "        sync_type: incremental\n        auto_start: false\n"))
    return folder


class WorkerProcess:
    """`nango worker` as a real process, so it can be killed with SIGKILL."""

    def __init__(self, stack: Stack, prefix: str, tmp: Path, **env: str) -> None:
        s = stack.settings
        self.env = {**os.environ, "DATABASE_URL": s.database_url.get_secret_value(),
                    "TEMPORAL_ADDRESS": s.temporal_address, "MINIO_ENDPOINT": s.minio_endpoint,
                    "MINIO_ACCESS_KEY": "testing", "MINIO_SECRET_KEY": "testing", "MINIO_BUCKET": s.minio_bucket,
                    "ENCRYPTION_KEY": s.encryption_key.get_secret_value(), "TASK_QUEUE_PREFIX": prefix,
                    "RUNNER_HEARTBEAT_TIMEOUT_S": "4", "BUNDLE_CACHE_DIR": str(tmp / f"cache-{uuid.uuid4().hex[:6]}"),
                    "WORKER_HEALTH_PORT": "0", "WORKER_TASK_QUEUES": "syncs", "LOG_FORMAT": "json",
                    # one sync at a time: one warm child, not the four a start would wait for
                    "RUNNER_WARM_CHILDREN": "1", "EGRESS_ALLOW": s.egress_allow,
                    # a killed worker's workflows move to another after 1 s, not Temporal's 10 s
                    "WORKER_STICKY_TIMEOUT_S": "1", **env}
        self.log = tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = await asyncio.to_thread(open, self.log, "wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestrator", "worker", env=self.env, stdout=out, stderr=out,
            start_new_session=True)
        out.close()

        async def started() -> None:
            assert b"worker_started" in self.log.read_bytes(), self.log.read_text()[-2000:]
        await eventually(started, timeout=30)

    async def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()


async def _start_run(stack: Stack, gh: GithubSetup, prefix: str) -> WorkflowHandle:
    async with stack.pool.acquire() as conn:
        env_id = await conn.fetchval("SELECT id FROM environments WHERE name = $1", gh.env)
    return await stack.client.start_workflow(
        "SyncWorkflow", SyncInput(env_id, gh.env, "github", gh.connection_id, "issues"),
        id=f"fault-{uuid.uuid4().hex[:8]}", task_queue=f"{prefix}syncs")


async def set_pause(stack: Stack, gh: GithubSetup, seconds: float, connection_id: str | None = None) -> None:
    """The slow sync's pause per page from its next attempt on: 0 once the wait has done its job."""
    async with stack.api(gh.key) as api:
        await api.update_metadata("github", connection_id or gh.connection_id, {"pause": seconds})


async def _saved(stack: Stack, gh: GithubSetup) -> tuple[int, int]:
    """(records stored, records the job counted as added)."""
    async with stack.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM records r JOIN environments e ON e.id = r.environment_id WHERE e.name = $1", gh.env)
        counted = await conn.fetchval(
            "SELECT coalesce(sum(k.added), 0) FROM job_counts k JOIN jobs j ON j.id = k.job_id"
            " JOIN environments e ON e.id = j.environment_id WHERE e.name = $1", gh.env)
    return stored, counted


async def _at_least(stack: Stack, gh: GithubSetup, n: int) -> None:
    async def check() -> None:
        stored, _ = await _saved(stack, gh)
        assert stored >= n, stored
    await eventually(check, timeout=60, interval=0.1)


async def test_worker_killed_mid_sync_is_replaced_without_lost_or_duplicate_records(
        stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, folder=slow_folder(tmp_path, auto_start=False))
    prefix = f"k{uuid.uuid4().hex[:6]}-"
    first = WorkerProcess(stack, prefix, tmp_path)
    await first.start()
    handle = await _start_run(stack, gh, prefix)
    await _at_least(stack, gh, 4 * PER_PAGE)
    await first.kill()
    partial, _ = await _saved(stack, gh)
    assert partial < PAGES * PER_PAGE
    await set_pause(stack, gh, 0)  # the retry need not be slow
    second = WorkerProcess(stack, prefix, tmp_path)
    await second.start()
    try:
        summary = await asyncio.wait_for(handle.result(), 90)
    finally:
        await second.stop()
    assert summary["status"] == "success"
    stored, counted = await _saved(stack, gh)
    assert stored == PAGES * PER_PAGE
    assert counted == PAGES * PER_PAGE  # exact: replayed pages changed nothing and counted nothing
    async with stack.pool.acquire() as conn:
        jobs = await conn.fetch("SELECT status FROM jobs j JOIN environments e ON e.id = j.environment_id"
                                " WHERE e.name = $1 AND j.kind = 'sync'", gh.env)
    assert [j["status"] for j in jobs] == ["success"]


async def test_postgres_restarted_mid_run_the_run_resumes(stack: Stack, pg_server: EmbeddedPostgres | None,
                                                          tmp_path: Path) -> None:
    if pg_server is None:
        pytest.skip("DATABASE_URL points at an external server; this test restarts the embedded one")
    gh = await setup_github(stack, folder=slow_folder(tmp_path, auto_start=False))
    handle = await _start_run(stack, gh, stack.settings.task_queue_prefix)
    await _at_least(stack, gh, 3 * PER_PAGE)
    await pg_server.stop()
    await asyncio.sleep(2)
    await pg_server.start()
    summary = await asyncio.wait_for(handle.result(), 120)
    assert summary["status"] == "success"
    stored, counted = await _saved(stack, gh)
    assert stored == PAGES * PER_PAGE and counted == PAGES * PER_PAGE


async def test_bundle_store_unreachable_retries_then_completes(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=3)
    folder_gh = await setup_github(stack, folder=slow_folder(tmp_path, auto_start=False))
    await set_pause(stack, folder_gh, 0)  # nothing here needs a slow run
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    broken = WorkerProcess(stack, prefix, tmp_path, MINIO_ENDPOINT="127.0.0.1:9")
    await broken.start()
    handle = await _start_run(stack, folder_gh, prefix)

    async def retrying() -> None:
        desc = await handle.describe()
        pending = desc.raw_description.pending_activities
        assert pending and pending[0].attempt >= 2, pending
        assert "unreachable" in pending[0].last_failure.message, pending[0].last_failure.message
    await eventually(retrying, timeout=60)
    async with stack.pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM jobs j JOIN environments e ON e.id = j.environment_id"
                                     " WHERE e.name = $1", folder_gh.env)
    assert status == "running"
    await broken.kill()
    good = WorkerProcess(stack, prefix, tmp_path)
    await good.start()
    try:
        summary = await asyncio.wait_for(handle.result(), 90)
    finally:
        await good.stop()
    assert summary["status"] == "success"
    assert gh.repo  # the ordinary stack kept working meanwhile


async def test_pause_during_a_run_lets_it_finish(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, folder=slow_folder(tmp_path, auto_start=True))
    await _at_least(stack, gh, PER_PAGE)
    async with stack.api(gh.key) as api:
        await api.request("POST", "/sync/pause", json={"syncs": ["issues"], "provider_config_key": "github"})

        async def finished() -> dict:
            body = await api.request("GET", "/sync/status", params={
                "syncs": "issues", "provider_config_key": "github", "connection_id": "conn-1"})
            st = body["syncs"][0]
            assert st["status"] == "PAUSED" and st["latestExecutionStatus"] == "SUCCESS", st
            return st
        st = await eventually(finished, timeout=60)
    assert st["recordCount"] == {"GithubIssue": PAGES * PER_PAGE}
