"""One job table for every kind of script run: how jobs open, reopen and close, against a real PostgreSQL."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from orchestrator.store import jobs
from tests.conftest import fresh_connection


@pytest.fixture
async def connection(pool: asyncpg.Pool) -> tuple[int, int]:
    """A fresh (environment id, connection pk)."""
    return await fresh_connection(pool, "js")


async def test_a_retried_sync_activity_gets_its_job_back_and_a_dead_runs_job_is_superseded(
        pool: asyncpg.Pool, connection: tuple[int, int]) -> None:
    env_id, pk = connection
    async with pool.acquire() as conn:
        first = await jobs.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="issues", kind="sync",
                                    workflow_id="wf-1", run_id="run-1")
        again = await jobs.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="issues", kind="sync",
                                    workflow_id="wf-1", run_id="run-1")
        assert again == first
        second = await jobs.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="issues", kind="sync",
                                     workflow_id="wf-2", run_id="run-2")
        assert second != first
        old = await jobs.get(conn, first)
        assert old is not None and old.status == "failed" and "superseded" in (old.error or "")


async def test_a_sync_run_leaves_a_running_webhook_job_of_the_same_sync_alone(
        pool: asyncpg.Pool, connection: tuple[int, int]) -> None:
    """Webhook script runs are jobs named after their sync; a sync run starting meanwhile must not close them."""
    env_id, pk = connection
    async with pool.acquire() as conn:
        webhook = await jobs.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="issues",
                                      kind="webhook", public_id=str(uuid.uuid4()), input={"payload": {}})
        sync = await jobs.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="issues", kind="sync",
                                   workflow_id="wf-3", run_id="run-3")
        assert sync != webhook
        still = await jobs.get(conn, webhook)
        assert still is not None and still.status == "running" and still.kind == "webhook"


async def test_a_script_job_keeps_its_error_type_apart_from_its_message(
        pool: asyncpg.Pool, connection: tuple[int, int]) -> None:
    env_id, pk = connection
    async with pool.acquire() as conn:
        job_id = await jobs.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="create-issue",
                                     kind="action", public_id=str(uuid.uuid4()), input={"title": "x"})
        await jobs.close_job(conn, job_id, "failed", error="the title: is taken", error_type="ValueError")
        job = await jobs.get(conn, job_id)
    assert job is not None
    assert (job.error_type, job.error) == ("ValueError", "the title: is taken")
    assert job.error_text == "ValueError: the title: is taken"
