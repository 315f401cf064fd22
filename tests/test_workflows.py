"""The workflows on their own: stand-in activities under the real names, on the session's Temporal dev server.

No database, bundle store or runner: each test registers fakes for the activities a workflow calls
(`@activity.defn(name="prepare_sync")`...) on a fresh task queue, and checks what the workflow
asked of them and what it returned. Also the boundary pieces that need no server: the retry
policy's error list, the activity boundary, the progress throttle and the shared beat loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pkgutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
import structlog
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

import orchestrator
from activities.boundary import boundary
from activities.sync import (
    PROGRESS_SIGNAL_INTERVAL_S,
    PROGRESS_SIGNALS_PER_RUN,
    ProgressThrottle,
    progress_reporter,
    signals_sent,
)
from orchestrator.errors import NotFoundError, OrchestratorError, TransientError
from orchestrator.runs.host import beating
from orchestrator.temporal.policies import NON_RETRYABLE
from orchestrator.temporal.types import (
    ActionWorkflowInput,
    EventInput,
    EventWorkflowInput,
    EventWorkflowResult,
    FinalizeInput,
    NotifyInput,
    NotifyResult,
    PreparedSync,
    RunSyncInput,
    RunSyncResult,
    ScriptJobClosed,
    ScriptJobInput,
    ScriptJobResult,
    SyncInput,
    SyncProgress,
    SyncSummary,
    WebhookFinished,
    WebhookInput,
    WebhookTargets,
    WebhookWorkflowInput,
    WebhookWorkflowResult,
)
from workflows.scripts import ActionWorkflow, EventWorkflow, WebhookWorkflow
from workflows.sync import SyncWorkflow

SYNC = SyncInput(1, "prod", "github", "conn-1", "issues")
COUNTS = {"GithubIssue": {"added": 3, "updated": 1, "deleted": 0}}


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@dataclass
class Calls:
    """What the stand-in activities were asked, in order."""

    names: list[str] = field(default_factory=list)
    args: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, name: str, arg: Any) -> None:
        self.names.append(name)
        self.args.setdefault(name, []).append(arg)


def prepared(**overrides: Any) -> PreparedSync:
    values: dict[str, Any] = dict(job_id=7, connection_pk=3, bundle_key="k", bundle_sha256="s", module_path="m",
                                  started_at="2024-01-01T00:00:00+00:00", timeout_s=60, heartbeat_timeout_s=2,
                                  models=["GithubIssue"])
    values.update(overrides)
    return PreparedSync(**values)


def sync_standins(calls: Calls, run: Callable[[RunSyncInput], Any], prep: PreparedSync | None = None) -> list[Any]:
    @activity.defn(name="prepare_sync")
    async def prepare_sync(sync: SyncInput) -> PreparedSync:
        calls.add("prepare_sync", sync)
        return prep or prepared()

    @activity.defn(name="run_sync_script")
    async def run_sync_script(inp: RunSyncInput) -> RunSyncResult:
        calls.add("run_sync_script", inp)
        return await run(inp)

    @activity.defn(name="finalize_sync")
    async def finalize_sync(inp: FinalizeInput) -> SyncSummary:
        calls.add("finalize_sync", inp)
        status = "success" if inp.success else ("cancelled" if inp.cancelled else "failed")
        return SyncSummary(inp.prepared.job_id, status, COUNTS if inp.success else {}, inp.error)

    @activity.defn(name="notify_sync")
    async def notify_sync(inp: NotifyInput) -> NotifyResult:
        calls.add("notify_sync", inp)
        return NotifyResult(delivered=1)

    return [prepare_sync, run_sync_script, finalize_sync, notify_sync]


@contextlib.asynccontextmanager
async def worker(client: Client, workflows: Sequence[type], activities: Sequence[Any]) -> AsyncIterator[str]:
    """A worker on a fresh task queue for one test; yields the queue name."""
    queue = f"tq-{uuid4()}"
    async with Worker(client, task_queue=queue, workflows=list(workflows), activities=list(activities)):
        yield queue


async def run_sync(client: Client, activities: list[Any]) -> SyncSummary:
    async with worker(client, [SyncWorkflow], activities) as queue:
        return await client.execute_workflow(SyncWorkflow.run, SYNC, id=f"sync-{uuid4()}", task_queue=queue,
                                             execution_timeout=timedelta(seconds=60))


# --- SyncWorkflow ------------------------------------------------------------------------------------

async def test_sync_runs_prepare_run_finalize_notify_and_returns_the_summary(client: Client) -> None:
    calls = Calls()

    async def run(inp: RunSyncInput) -> RunSyncResult:
        assert activity.info().heartbeat_timeout == timedelta(seconds=2)  # from PreparedSync.heartbeat_timeout_s
        return RunSyncResult(COUNTS)

    summary = await run_sync(client, sync_standins(calls, run))
    assert calls.names == ["prepare_sync", "run_sync_script", "finalize_sync", "notify_sync"]
    assert summary == SyncSummary(7, "success", COUNTS, None)
    fin: FinalizeInput = calls.args["finalize_sync"][0]
    assert fin.success and not fin.cancelled and fin.error is None
    assert calls.args["notify_sync"][0] == NotifyInput(fin, summary)


async def test_sync_skipped_by_prepare_runs_nothing_else(client: Client) -> None:
    calls = Calls()

    async def run(inp: RunSyncInput) -> RunSyncResult:
        raise AssertionError("a skipped sync must not run")

    summary = await run_sync(client, sync_standins(calls, run, prepared(skip_reason="sync 'issues' is disabled")))
    assert calls.names == ["prepare_sync"]
    assert summary == SyncSummary(None, "skipped", error="sync 'issues' is disabled")


async def test_script_error_is_not_retried_finalizes_as_failed_and_fails_the_run(client: Client) -> None:
    calls = Calls()

    async def run(inp: RunSyncInput) -> RunSyncResult:
        raise ApplicationError("ValueError: bad page", "Traceback ...", type="ScriptError", non_retryable=True)

    with pytest.raises(WorkflowFailureError) as failure:
        await run_sync(client, sync_standins(calls, run))
    assert calls.names == ["prepare_sync", "run_sync_script", "finalize_sync", "notify_sync"]  # one attempt
    fin: FinalizeInput = calls.args["finalize_sync"][0]
    assert not fin.success and not fin.cancelled
    assert fin.error == "ScriptError: ValueError: bad page" and fin.error_details == "Traceback ..."
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ScriptError"
    assert "ValueError: bad page" in cause.message


async def test_a_terminal_error_type_is_not_retried_even_without_the_flag(client: Client) -> None:
    """The policy's list, not only the error's flag, keeps a platform's terminal error from retrying."""
    calls = Calls()

    async def run(inp: RunSyncInput) -> RunSyncResult:
        raise ApplicationError("bundle k is corrupt", type="BundleError")

    with pytest.raises(WorkflowFailureError):
        await run_sync(client, sync_standins(calls, run))
    assert calls.names.count("run_sync_script") == 1


async def test_cancel_signal_during_the_run_finalizes_as_cancelled(client: Client) -> None:
    calls = Calls()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def run(inp: RunSyncInput) -> RunSyncResult:
        started.set()
        try:
            while True:  # heartbeats are how the cancel reaches a running activity
                activity.heartbeat({"added": 0})
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with worker(client, [SyncWorkflow], sync_standins(calls, run)) as queue:
        handle = await client.start_workflow(SyncWorkflow.run, SYNC, id=f"sync-{uuid4()}", task_queue=queue,
                                             execution_timeout=timedelta(seconds=60))
        await asyncio.wait_for(started.wait(), 20)
        await handle.signal(SyncWorkflow.cancel, "stop it")
        summary = await handle.result()
    assert cancelled.is_set()
    assert summary.status == "cancelled" and summary.error == "stop it"
    fin: FinalizeInput = calls.args["finalize_sync"][0]
    assert fin.cancelled and not fin.success and fin.error == "stop it"


async def test_progress_query_answers_with_what_the_throttled_reporter_sent(client: Client) -> None:
    calls = Calls()
    reported = asyncio.Event()
    release = asyncio.Event()

    async def run(inp: RunSyncInput) -> RunSyncResult:
        report = progress_reporter(inp, ProgressThrottle())
        assert report is not None
        await report({"added": 2, "updated": 0, "deleted": 0, "models": {"GithubIssue": {"added": 2}}}, False)
        await report({"added": 5, "updated": 0, "deleted": 0, "models": {}}, False)  # within 30 s: held back
        reported.set()
        await asyncio.wait_for(release.wait(), 20)
        return RunSyncResult(COUNTS)

    async with worker(client, [SyncWorkflow], sync_standins(calls, run)) as queue:
        handle = await client.start_workflow(SyncWorkflow.run, SYNC, id=f"sync-{uuid4()}", task_queue=queue,
                                             execution_timeout=timedelta(seconds=60))
        await asyncio.wait_for(reported.wait(), 20)
        progress = await handle.query(SyncWorkflow.progress)
        assert progress == SyncProgress("running", 7, 2, 0, 0, {"models": {"GithubIssue": {"added": 2}}})
        release.set()
        await handle.result()
        assert (await handle.query(SyncWorkflow.progress)).phase == "success"


# --- ActionWorkflow, WebhookWorkflow, EventWorkflow ------------------------------------------------------

def job(script: str, job_id: int, kind: str = "action") -> ScriptJobInput:
    return ScriptJobInput(1, "prod", "github", "conn-1", script, kind, job_id)


def script_standins(calls: Calls, run: Callable[[ScriptJobInput], Any],
                    targets: WebhookTargets | None = None) -> list[Any]:
    @activity.defn(name="run_script_job")
    async def run_script_job(inp: ScriptJobInput) -> ScriptJobResult:
        calls.add("run_script_job", inp)
        info = activity.info()
        # an action's run is a local activity (no heartbeat: its workflow task timeout notices a lost worker);
        # webhook and event runs stay regular activities with the heartbeat timeout they were given
        assert info.is_local == (inp.kind == "action")
        assert info.is_local or info.heartbeat_timeout == timedelta(seconds=4)
        return await run(inp)

    @activity.defn(name="fail_script_job")
    async def fail_script_job(inp: ScriptJobInput) -> ScriptJobClosed:
        calls.add("fail_script_job", inp)
        return ScriptJobClosed(inp.job_id)

    @activity.defn(name="route_webhook")
    async def route_webhook(inp: WebhookInput) -> WebhookTargets:
        calls.add("route_webhook", inp)
        return targets or WebhookTargets()

    @activity.defn(name="finish_webhook")
    async def finish_webhook(inp: WebhookInput) -> WebhookFinished:
        calls.add("finish_webhook", inp)
        return WebhookFinished(inp.payload_id)

    return [run_script_job, fail_script_job, route_webhook, finish_webhook]


async def test_action_returns_the_job_result(client: Client) -> None:
    calls = Calls()

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        return ScriptJobResult(True, output={"id": 1})

    async with worker(client, [ActionWorkflow], script_standins(calls, run)) as queue:
        result = await client.execute_workflow(
            ActionWorkflow.run, ActionWorkflowInput(job("create-issue", 11), 60, 0, heartbeat_timeout_s=4),
            id=f"action-{uuid4()}", task_queue=queue)
    assert result == ScriptJobResult(True, output={"id": 1})
    assert calls.names == ["run_script_job"]


async def test_failed_action_fails_the_workflow_with_its_error(client: Client) -> None:
    calls = Calls()

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        return ScriptJobResult(False, error_type="action_error", error_message="no such repo",
                               error_payload={"repo": "x"})

    async with worker(client, [ActionWorkflow], script_standins(calls, run)) as queue:
        with pytest.raises(WorkflowFailureError) as failure:
            await client.execute_workflow(
                ActionWorkflow.run, ActionWorkflowInput(job("create-issue", 12), 60, 2, heartbeat_timeout_s=4),
                id=f"action-{uuid4()}", task_queue=queue)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "action_error"
    assert "no such repo" in cause.message and cause.details == ({"repo": "x"},)
    assert calls.names == ["run_script_job"]  # the script's failure is the result: never retried


async def test_action_whose_infra_retries_run_out_closes_its_job(client: Client) -> None:
    calls = Calls()

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        raise ApplicationError("database unreachable", type="TransientError")

    async with worker(client, [ActionWorkflow], script_standins(calls, run)) as queue:
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                ActionWorkflow.run, ActionWorkflowInput(job("create-issue", 13), 60, 1, heartbeat_timeout_s=4),
                id=f"action-{uuid4()}", task_queue=queue)
    assert calls.names == ["run_script_job", "run_script_job", "fail_script_job"]  # 1 + max_retries attempts
    assert calls.args["fail_script_job"][0].job_id == 13


async def test_an_action_over_its_environments_share_waits_on_a_timer_without_spending_attempts(
        client: Client) -> None:
    """EnvironmentBusyError frees the worker's slot; the workflow sleeps and runs the job again, past max_retries."""
    calls = Calls()

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        if len(calls.names) <= 2:  # the share is full for the first two tries (waits of 1 s, then 2 s)
            raise ApplicationError("this environment already runs 1 action script(s)", type="EnvironmentBusyError")
        return ScriptJobResult(True, output={"id": 2})

    async with worker(client, [ActionWorkflow], script_standins(calls, run)) as queue:
        result = await client.execute_workflow(
            ActionWorkflow.run, ActionWorkflowInput(job("create-issue", 14), 60, 0, heartbeat_timeout_s=4),
            id=f"action-{uuid4()}", task_queue=queue)
    assert result == ScriptJobResult(True, output={"id": 2})
    assert calls.names == ["run_script_job"] * 3  # max_retries 0, yet run again: busy is no failed attempt


async def test_webhook_runs_every_routed_job_and_fails_when_one_failed(client: Client) -> None:
    calls = Calls()
    jobs = [job("issues", 21, "webhook"), job("issues", 22, "webhook")]

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        if inp.job_id == 22:
            return ScriptJobResult(False, error_type="KeyError", error_message="'action'")
        return ScriptJobResult(True)

    hook = WebhookInput(1, "prod", "github", 99)
    async with worker(client, [WebhookWorkflow], script_standins(calls, run, WebhookTargets(jobs))) as queue:
        with pytest.raises(WorkflowFailureError) as failure:
            await client.execute_workflow(WebhookWorkflow.run, WebhookWorkflowInput(hook, 60, heartbeat_timeout_s=4),
                                          id=f"webhook-{uuid4()}", task_queue=queue)
    assert calls.names == ["route_webhook", "run_script_job", "run_script_job", "finish_webhook"]
    assert [j.job_id for j in calls.args["run_script_job"]] == [21, 22]
    assert calls.args["finish_webhook"] == [hook]
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "ScriptError"
    assert "1 of 2" in cause.message


async def test_webhook_with_all_jobs_ok_returns_how_many_ran(client: Client) -> None:
    calls = Calls()

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        return ScriptJobResult(True)

    targets = WebhookTargets([job("issues", 23, "webhook")])
    async with worker(client, [WebhookWorkflow], script_standins(calls, run, targets)) as queue:
        result = await client.execute_workflow(
            WebhookWorkflow.run, WebhookWorkflowInput(WebhookInput(1, "prod", "github", 98), 60, heartbeat_timeout_s=4),
            id=f"webhook-{uuid4()}", task_queue=queue)
    assert result == WebhookWorkflowResult(jobs=1)


async def test_event_collects_one_result_per_job_and_keeps_going_after_a_platform_failure(client: Client) -> None:
    calls = Calls()

    async def run(inp: ScriptJobInput) -> ScriptJobResult:
        if inp.job_id == 31:
            raise ApplicationError("connection 'conn-1' no longer exists", type="NotFoundError", non_retryable=True)
        return ScriptJobResult(True, output="ok")

    event = EventInput(1, "prod", "github", "conn-1", "post-connection-creation",
                       [job("welcome", 31, "event"), job("audit", 32, "event")])
    async with worker(client, [EventWorkflow], script_standins(calls, run)) as queue:
        result = await client.execute_workflow(
            EventWorkflow.run, EventWorkflowInput(event, 60, heartbeat_timeout_s=4),
            id=f"event-{uuid4()}", task_queue=queue)
    assert isinstance(result, EventWorkflowResult) and len(result.results) == 2
    first, second = result.results
    assert not first.ok and first.error_type == "platform_error" and "no longer exists" in (first.error_message or "")
    assert second == ScriptJobResult(True, output="ok")
    assert calls.names == ["run_script_job", "fail_script_job", "run_script_job"]


# --- no server needed ------------------------------------------------------------------------------------

def test_non_retryable_list_names_exactly_the_platforms_terminal_errors() -> None:
    for mod in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    terminal = {c.__name__ for c in [OrchestratorError, *subclasses(OrchestratorError)] if c.terminal}
    assert set(NON_RETRYABLE) == terminal
    assert "TransientError" not in NON_RETRYABLE


class _Acts:
    def __init__(self) -> None:
        self.context: dict[str, Any] = {}

    @activity.defn(name="probe")
    @boundary
    async def probe(self, inp: ScriptJobInput) -> ScriptJobResult:
        self.context = structlog.contextvars.get_contextvars()
        if inp.script_name == "missing":
            raise NotFoundError("connection 'conn-1' no longer exists")
        if inp.script_name == "flaky":
            raise TransientError("database unreachable")
        return ScriptJobResult(True)


async def test_boundary_binds_log_context_and_translates_platform_errors() -> None:
    env = ActivityEnvironment()
    acts = _Acts()
    structlog.contextvars.bind_contextvars(stale="from an earlier activity")
    assert await env.run(acts.probe, job("create-issue", 41)) == ScriptJobResult(True)
    assert acts.context == {"activity": "unknown", "workflow_id": "test", "run_id": "test-run",
                            "environment": "prod", "integration": "github", "connection": "conn-1",
                            "script": "create-issue", "kind": "action", "job_id": 41}
    structlog.contextvars.clear_contextvars()

    with pytest.raises(ApplicationError) as terminal:
        await env.run(_Acts().probe, job("missing", 42))
    assert terminal.value.type == "NotFoundError" and terminal.value.non_retryable
    with pytest.raises(ApplicationError) as transient:
        await env.run(_Acts().probe, job("flaky", 43))
    assert transient.value.type == "TransientError" and not transient.value.non_retryable


def test_throttle_sends_the_first_report_then_one_per_interval_up_to_the_cap() -> None:
    throttle = ProgressThrottle(interval=30, cap=3)
    assert throttle.allow({"added": 1}, now=0)
    assert not throttle.allow({"added": 2}, now=10)  # too soon
    assert throttle.allow({"added": 2}, now=30)
    assert not throttle.allow({"added": 2}, now=90)  # nothing new
    assert throttle.allow({"added": 3}, now=90)
    assert throttle.sent == 3
    assert not throttle.allow({"added": 4}, now=1000)  # cap reached
    assert throttle.allow({"added": 5}, now=1000, final=True)  # the final one always goes...
    assert not throttle.allow({"added": 5}, now=2000, final=True)  # ...unless it says nothing new
    assert (PROGRESS_SIGNAL_INTERVAL_S, PROGRESS_SIGNALS_PER_RUN) == (30.0, 200)


def test_throttle_cap_counts_the_signals_of_earlier_attempts() -> None:
    assert signals_sent([]) == 0
    assert signals_sent([{"added": 3, "progress_signals": 199}]) == 199
    throttle = ProgressThrottle(sent=signals_sent([{"progress_signals": PROGRESS_SIGNALS_PER_RUN}]))
    assert not throttle.allow({"added": 1}, now=0)
    assert throttle.allow({"added": 1}, now=0, final=True)


class _FakeProgress:
    def __init__(self) -> None:
        self.added = 0

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added}


class _FakeHost:
    def __init__(self) -> None:
        self.progress = _FakeProgress()
        self.flushes = 0

    async def flush_logs(self, *, final: bool = False) -> None:
        self.flushes += 1


async def test_beating_heartbeats_reports_changes_and_the_final_progress() -> None:
    host = _FakeHost()
    beats: list[dict[str, Any]] = []
    reports: list[tuple[dict[str, Any], bool]] = []

    async def on_progress(progress: dict[str, Any], final: bool) -> None:
        reports.append((progress, final))

    async with beating(host, beats.append, 0.01, on_progress):  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        host.progress.added = 4
        await asyncio.sleep(0.05)
    assert beats and beats[-1] == {"added": 4}
    assert reports[0] == ({"added": 0}, False) and ({"added": 4}, False) in reports
    assert reports[-1] == ({"added": 4}, True)
    assert host.flushes >= 2


async def test_beating_sends_no_final_report_when_the_run_fails() -> None:
    host = _FakeHost()
    reports: list[bool] = []

    async def on_progress(progress: dict[str, Any], final: bool) -> None:
        reports.append(final)

    with pytest.raises(RuntimeError):
        async with beating(host, None, 10, on_progress):  # type: ignore[arg-type]
            raise RuntimeError("cancelled or crashed")
    assert reports == [] and host.flushes == 1
