"""Runs started before actions and prepare_sync became local activities (issue 18) still replay.

A worker deployed with the new code picks up workflows whose histories the old code wrote (a long action,
a sync in the middle of its run); `workflow.patched` keeps them on the regular activity they recorded.
Each test records a history with the old code (written out here as it was) and replays it with today's.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from orchestrator.temporal.types import (
    ActionWorkflowInput,
    PreparedSync,
    ScriptJobInput,
    ScriptJobResult,
    SyncInput,
    SyncSummary,
)
from workflows.scripts import ActionWorkflow
from workflows.sync import SyncWorkflow


@workflow.defn(name="ActionWorkflow", sandboxed=False)
class ActionWorkflowBefore:
    """ActionWorkflow as it was: the run as a regular, heartbeating activity."""

    @workflow.run
    async def run(self, inp: ActionWorkflowInput) -> ScriptJobResult:
        return await workflow.execute_activity(
            "run_script_job", inp.job, result_type=ScriptJobResult, start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=inp.heartbeat_timeout_s),
            retry_policy=RetryPolicy(maximum_attempts=1 + inp.max_retries))


@workflow.defn(name="SyncWorkflow", sandboxed=False)
class SyncWorkflowBefore:
    """SyncWorkflow as it was, up to a skipped run: prepare_sync as a regular activity."""

    @workflow.run
    async def run(self, sync: SyncInput) -> SyncSummary:
        prepared: PreparedSync = await workflow.execute_activity(
            "prepare_sync", sync, result_type=PreparedSync, start_to_close_timeout=timedelta(minutes=2))
        return SyncSummary(None, "skipped", error=prepared.skip_reason)


@activity.defn(name="run_script_job")
async def run_script_job(inp: ScriptJobInput) -> ScriptJobResult:
    return ScriptJobResult(True, output={"job": inp.job_id})


@activity.defn(name="prepare_sync")
async def prepare_sync(sync: SyncInput) -> PreparedSync:
    return PreparedSync(0, 0, "", "", "", "", 60, skip_reason="the connection is paused")


async def _history_before(client: Client, workflow_cls: type, arg: object) -> object:
    queue = f"tq-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[workflow_cls], activities=[run_script_job, prepare_sync]):
        handle = await client.start_workflow(workflow_cls.run, arg, id=f"before-{uuid.uuid4()}",  # type: ignore[attr-defined]
                                             task_queue=queue)
        await handle.result()
    return await handle.fetch_history()


async def test_an_action_recorded_before_replays_on_the_regular_activity(temporal_env: WorkflowEnvironment) -> None:
    job = ScriptJobInput(1, "prod", "github", "conn-1", "create-issue", "action", 51)
    history = await _history_before(temporal_env.client, ActionWorkflowBefore, ActionWorkflowInput(job, 60, 2))
    assert any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in history.events)  # type: ignore[attr-defined]
    result = await Replayer(workflows=[ActionWorkflow]).replay_workflow(history)  # type: ignore[arg-type]
    assert result.replay_failure is None


async def test_a_sync_recorded_before_replays_on_the_regular_activity(temporal_env: WorkflowEnvironment) -> None:
    history = await _history_before(temporal_env.client, SyncWorkflowBefore,
                                    SyncInput(1, "prod", "github", "conn-1", "issues"))
    result = await Replayer(workflows=[SyncWorkflow]).replay_workflow(history)  # type: ignore[arg-type]
    assert result.replay_failure is None
