"""Actions run as a local activity (issue 18): a lost worker's action is taken over by another worker, it
counts against the attempts the caller allowed, its job is closed once, and its history still shows the run.
An awaited action answers as soon as its job row is closed (the worker's notification), and from the
workflow's result when that notification cannot come."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orchestrator.api.actions import JOB_CLOSES
from orchestrator.api.app import create_app
from orchestrator.store import job_events
from orchestrator.store import jobs as jobs_repo
from orchestrator.temporal import names
from orchestrator.temporal.starter import start_action
from orchestrator.temporal.types import ActionWorkflowInput, ScriptJobInput, ScriptJobResult
from tests.conftest import Stack, eventually, setup_github
from workflows.scripts import ActionWorkflow

ROOT = Path(__file__).resolve().parent.parent

# A worker in its own process whose action never ends: it writes `started` and waits until it is killed.
DOOMED_WORKER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from temporalio import activity
    from temporalio.client import Client
    from temporalio.worker import Worker
    from orchestrator.temporal.types import ScriptJobInput, ScriptJobResult
    from workflows.scripts import ActionWorkflow

    address, queue, started = sys.argv[1:4]

    @activity.defn(name="run_script_job")
    async def run_script_job(inp: ScriptJobInput) -> ScriptJobResult:
        Path(started).write_text(str(activity.info().is_local))
        await asyncio.sleep(3600)
        return ScriptJobResult(True)

    async def main() -> None:
        client = await Client.connect(address)
        async with Worker(client, task_queue=queue, workflows=[ActionWorkflow], activities=[run_script_job]):
            await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_a_killed_workers_action_is_taken_over_and_its_history_shows_the_run(
        temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    client = temporal_env.client
    queue, started = f"tq-{uuid.uuid4()}", tmp_path / "started"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DOOMED_WORKER, client.service_client.config.target_host, queue, str(started),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        job = ScriptJobInput(1, "prod", "github", "conn-1", "create-issue", "action", 41)
        handle = await client.start_workflow(
            ActionWorkflow.run, ActionWorkflowInput(job, 60, max_retries=1), id=f"action-{uuid.uuid4()}",
            task_queue=queue, task_timeout=timedelta(seconds=2), execution_timeout=timedelta(seconds=120))
        for _ in range(300):
            if started.exists():
                break
            await asyncio.sleep(0.1)
        assert started.read_text() == "True"  # the run is a local activity in the worker that took the workflow
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    runs: list[ScriptJobInput] = []

    @activity.defn(name="run_script_job")
    async def run_script_job(inp: ScriptJobInput) -> ScriptJobResult:
        runs.append(inp)
        return ScriptJobResult(True, output={"by": "the second worker"})

    async with Worker(client, task_queue=queue, workflows=[ActionWorkflow], activities=[run_script_job]):
        result = await asyncio.wait_for(handle.result(), 60)
    assert result == ScriptJobResult(True, output={"by": "the second worker"})
    # taken over once, carrying the caller's budget (1 + max_retries) so run_job can count the lost attempt
    assert [(r.job_id, r.max_attempts) for r in runs] == [(41, 2)]
    events = [e async for e in handle.fetch_history_events()]
    kinds = [e.event_type for e in events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    markers = [e for e in events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    # the run is in the history (the UI shows it as a local activity, with its type and result)
    recorded = [p.data for m in markers for ps in m.marker_recorded_event_attributes.details.values()
                for p in ps.payloads]
    assert any(b"run_script_job" in data for data in recorded)


async def test_a_job_whose_lost_attempts_spent_its_budget_is_closed_failed_once(stack: Stack) -> None:
    """A job already tried as often as the caller allowed, still running: its worker was lost each time.
    The next worker closes it failed, saying so, instead of running the action once more."""
    gh = await setup_github(stack, issues=1)
    public_id = str(uuid.uuid4())
    async with stack.pool.acquire() as conn:
        env_id, pk = await conn.fetchrow(
            "SELECT c.environment_id, c.id FROM connections c JOIN environments e ON e.id = c.environment_id"
            " WHERE e.name = $1", gh.env)
        job_id = await jobs_repo.open_job(conn, environment_id=env_id, connection_pk=pk, script_name="create-issue",
                                          kind="action", public_id=public_id, input={"title": "never created"})
        await conn.execute("UPDATE jobs SET attempts = 2 WHERE id = $1", job_id)
    job = ScriptJobInput(env_id, gh.env, "github", gh.connection_id, "create-issue", "action", job_id,
                         input={"title": "never created"})
    async with stack.platform() as platform:
        handle = await start_action(platform, job, public_id=public_id, max_retries=1)
        try:
            await asyncio.wait_for(handle.result(), 60)
            raise AssertionError("the action ran past its budget")
        except WorkflowFailureError:
            pass
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, attempts, error FROM jobs WHERE id = $1", job_id)
    assert row["status"] == "failed" and row["attempts"] == 3
    assert "worker running this action was lost" in row["error"]
    assert len(stack.demo.repo(gh.repo).issues) == 1  # the action did not run again: no issue created


def _action_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Connection-Id": "conn-1", "Provider-Config-Key": "github"}


async def test_an_awaited_action_answers_once_its_job_is_closed_without_waiting_for_the_workflow(
        stack: Stack) -> None:
    """No worker polls this API's task queue: its workflow never completes, yet the caller gets the output
    the job was closed with, as soon as the job's closer says so."""
    gh = await setup_github(stack, issues=1)
    settings = stack.settings.model_copy(update={"task_queue_prefix": f"nobody-{uuid.uuid4().hex[:6]}-"})
    async with TestClient(TestServer(create_app(settings, temporal=stack.client))) as api:
        call = asyncio.create_task(api.post("/action/trigger", headers=_action_headers(gh.key),
                                            json={"action_name": "create-issue", "input": {"title": "t"}}))

        async def opened() -> tuple[int, str]:
            async with stack.pool.acquire() as conn:
                row = await conn.fetchrow("SELECT j.id, j.public_id FROM jobs j JOIN environments e"
                                          " ON e.id = j.environment_id WHERE e.name = $1 AND j.kind = 'action'",
                                          gh.env)
            assert row is not None
            return row["id"], str(row["public_id"])
        job_id, public_id = await eventually(opened, timeout=30, interval=0.05)
        handle = stack.client.get_workflow_handle(f"action:{names.escape(gh.env)}:{public_id}")
        try:
            async with stack.pool.acquire() as conn:  # what the worker's run_job does once the script returned
                await jobs_repo.close_job(conn, job_id, "success", output={"number": 7, "title": "t"})
                await job_events.notify_closed(conn, job_id)
            resp = await asyncio.wait_for(call, 30)
            assert resp.status == 200
            assert await resp.json() == {"number": 7, "title": "t"}
            assert (await handle.describe()).status.name == "RUNNING"  # the answer did not come from Temporal
        finally:
            await handle.terminate("test over")


async def test_actions_still_answer_while_the_job_close_listener_is_down_and_it_comes_back(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with TestClient(TestServer(create_app(stack.settings, temporal=stack.client))) as api:
        listener = api.app[JOB_CLOSES]
        assert listener.listening
        async with stack.pool.acquire() as conn:  # a database restart or failover, as the listeners see it
            cut = await conn.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                      " WHERE query = $1", f'LISTEN "{job_events.CHANNEL}"')
        assert cut >= 1
        for n in range(2):  # answered whether the listener is still down or already back
            resp = await api.post("/action/trigger", headers=_action_headers(gh.key),
                                  json={"action_name": "create-issue", "input": {"title": f"during {n}"}})
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["title"] == f"during {n}"

        async def back() -> None:
            assert listener.listening
        await eventually(back, timeout=30, interval=0.1)
        resp = await api.post("/action/trigger", headers=_action_headers(gh.key),
                              json={"action_name": "create-issue", "input": {"title": "after"}})
        assert resp.status == 200 and (await resp.json())["title"] == "after"
