"""ActionWorkflow, WebhookWorkflow and EventWorkflow: deterministic wrappers around script runs.

A script's failure is the job's result (stored on the job row), not a retry: only
infrastructure faults are retried, as many times as the caller allowed.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from orchestrator.temporal.policies import BUSY_FIRST_WAIT, BUSY_MAX_WAIT, ENVIRONMENT_BUSY, attempts
    from orchestrator.temporal.types import (
        ActionWorkflowInput,
        EventWorkflowInput,
        EventWorkflowResult,
        ScriptJobClosed,
        ScriptJobInput,
        ScriptJobResult,
        WebhookFinished,
        WebhookTargets,
        WebhookWorkflowInput,
        WebhookWorkflowResult,
    )

MARGIN = timedelta(minutes=1)  # past the script's own wall limit, for fetching the bundle and closing the job
BOOKKEEPING_TIMEOUT = timedelta(minutes=1)
WEBHOOK_SCRIPT_ATTEMPTS = 3
EVENT_SCRIPT_ATTEMPTS = 3
ACTION_RUNS_LOCALLY = "action-runs-as-local-activity"  # workflow.patched id (issue 18)


# How a run's failure reaches the workflow: wrapped in an ActivityError from a regular activity, as the
# error itself (an ApplicationError, or a TimeoutError) from a local activity.
RunFailure = (ActivityError, ApplicationError, TemporalTimeoutError)


def _environment_busy(exc: Exception) -> bool:
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    return isinstance(cause, ApplicationError) and cause.type == ENVIRONMENT_BUSY


async def _run(job: ScriptJobInput, timeout_s: int, heartbeat_timeout_s: int, tries: int, *,
               local: bool = False) -> ScriptJobResult:
    """Run one job; when its attempts run out on infrastructure faults, close its row as failed and re-raise.

    While its environment's share of the worker's slots is full, wait on a timer (backing off) and run it
    again: the waiting holds no worker slot and spends none of the job's attempts.

    `local`: run it as a local activity in the worker that runs this workflow task (no task queue
    dispatch, no second workflow task: the action's latency floor). The same timeout and retry policy
    apply; a lost worker is noticed by the workflow task timeout instead of the heartbeat timeout, and
    the workflow task's replay on another worker runs the job again (run_job answers from a closed job).
    """
    wait = BUSY_FIRST_WAIT
    while True:
        try:
            if local:
                return await workflow.execute_local_activity(
                    "run_script_job", job, result_type=ScriptJobResult,
                    start_to_close_timeout=timedelta(seconds=timeout_s) + MARGIN, retry_policy=attempts(tries))
            return await workflow.execute_activity(
                "run_script_job", job, result_type=ScriptJobResult,
                start_to_close_timeout=timedelta(seconds=timeout_s) + MARGIN,
                heartbeat_timeout=timedelta(seconds=heartbeat_timeout_s), retry_policy=attempts(tries))
        except RunFailure as exc:
            if _environment_busy(exc):
                await workflow.sleep(wait)
                wait = min(wait * 2, BUSY_MAX_WAIT)
                continue
            await workflow.execute_activity("fail_script_job", job, result_type=ScriptJobClosed,
                                            start_to_close_timeout=timedelta(seconds=30), retry_policy=attempts(10))
            raise


@workflow.defn(name="ActionWorkflow", sandboxed=False)
class ActionWorkflow:
    """An action's run, awaited by its caller: the one workflow whose latency is the product.

    Outside Temporal's workflow sandbox (which re-imports the workflow's modules for every run: about 10 ms
    of each action, measured): its code calls only `workflow.*` APIs and passes dataclasses, and replay
    still checks every run's determinism against its history.
    """

    @workflow.run
    async def run(self, inp: ActionWorkflowInput) -> ScriptJobResult:
        job = inp.job
        # histories started before actions ran locally replay the regular activity they recorded
        local = workflow.patched(ACTION_RUNS_LOCALLY)
        tries = 1 + inp.max_retries
        if local:  # a local activity's attempts restart at 1 on another worker: run_job keeps the count on the job
            job = dataclasses.replace(job, max_attempts=tries)
        result = await _run(job, inp.timeout_s, inp.heartbeat_timeout_s, tries, local=local)
        if not result.ok:
            raise ApplicationError(f"action '{job.script_name}' failed: {result.error_message}",
                                   result.error_payload, type=result.error_type or "ActionError", non_retryable=True)
        return result


@workflow.defn(name="WebhookWorkflow")
class WebhookWorkflow:
    @workflow.run
    async def run(self, inp: WebhookWorkflowInput) -> WebhookWorkflowResult:
        # one attempt each: the maintenance loop starts the workflow again for a payload left unrouted
        targets: WebhookTargets = await workflow.execute_activity(
            "route_webhook", inp.webhook, result_type=WebhookTargets, start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=attempts(1))
        failures = 0
        for job in targets.jobs:
            try:
                result = await _run(job, inp.timeout_s, inp.heartbeat_timeout_s, WEBHOOK_SCRIPT_ATTEMPTS)
                failures += 0 if result.ok else 1
            except ActivityError:
                failures += 1
        await workflow.execute_activity("finish_webhook", inp.webhook, result_type=WebhookFinished,
                                        start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=attempts(1))
        if failures:
            raise ApplicationError(f"{failures} of {len(targets.jobs)} webhook script run(s) failed",
                                   type="ScriptError", non_retryable=True)
        return WebhookWorkflowResult(jobs=len(targets.jobs), ignored_reason=targets.ignored_reason)


@workflow.defn(name="EventWorkflow")
class EventWorkflow:
    @workflow.run
    async def run(self, inp: EventWorkflowInput) -> EventWorkflowResult:
        results: list[ScriptJobResult] = []
        for job in inp.event.jobs:
            try:
                results.append(await _run(job, inp.timeout_s, inp.heartbeat_timeout_s, EVENT_SCRIPT_ATTEMPTS))
            except ActivityError as exc:
                results.append(ScriptJobResult(False, error_type="platform_error", error_message=str(exc.cause or exc)))
        return EventWorkflowResult(results)
