"""ActionWorkflow, WebhookWorkflow and EventWorkflow: deterministic wrappers around script runs.

A script's failure is the job's result (stored on the job row), not a retry: only
infrastructure faults are retried, as many times as the caller allowed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orchestrator.temporal.types import (
        EventInput,
        ScriptJobInput,
        ScriptJobResult,
        WebhookInput,
        WebhookTargets,
    )

MARGIN = timedelta(minutes=1)
NON_RETRYABLE = ["NotFoundError", "BundleError", "InvalidInputError", "RefreshError", "ScriptError"]


def _retry(attempts: int) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                       maximum_attempts=max(1, attempts), non_retryable_error_types=NON_RETRYABLE)


async def _run(job: ScriptJobInput, timeout_s: int, attempts: int) -> ScriptJobResult:
    try:
        return await workflow.execute_activity(
            "run_script_job", job, result_type=ScriptJobResult,
            start_to_close_timeout=timedelta(seconds=timeout_s) + MARGIN, retry_policy=_retry(attempts))
    except ActivityError:
        await workflow.execute_activity("fail_script_job", job, start_to_close_timeout=timedelta(seconds=30),
                                        retry_policy=_retry(10))
        raise


@workflow.defn(name="ActionWorkflow")
class ActionWorkflow:
    @workflow.run
    async def run(self, job: ScriptJobInput, timeout_s: int, max_retries: int) -> ScriptJobResult:
        result = await _run(job, timeout_s, 1 + max_retries)
        if not result.ok:
            raise ApplicationError(f"action '{job.script_name}' failed: {result.error_message}",
                                   result.error_payload, type=result.error_type or "ActionError", non_retryable=True)
        return result


@workflow.defn(name="WebhookWorkflow")
class WebhookWorkflow:
    @workflow.run
    async def run(self, inp: WebhookInput, timeout_s: int) -> int:
        targets: WebhookTargets = await workflow.execute_activity(
            "route_webhook", inp, result_type=WebhookTargets, start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_retry(0))
        failures = 0
        for job in targets.jobs:
            try:
                result = await _run(job, timeout_s, 3)
                failures += 0 if result.ok else 1
            except ActivityError:
                failures += 1
        await workflow.execute_activity("finish_webhook", inp, start_to_close_timeout=timedelta(minutes=1),
                                        retry_policy=_retry(0))
        if failures:
            raise ApplicationError(f"{failures} of {len(targets.jobs)} webhook script run(s) failed",
                                   type="ScriptError", non_retryable=True)
        return len(targets.jobs)


@workflow.defn(name="EventWorkflow")
class EventWorkflow:
    @workflow.run
    async def run(self, inp: EventInput, timeout_s: int) -> list[ScriptJobResult]:
        results: list[ScriptJobResult] = []
        for job in inp.jobs:
            try:
                results.append(await _run(job, timeout_s, 3))
            except ActivityError as exc:
                results.append(ScriptJobResult(False, error_type="platform_error", error_message=str(exc.cause or exc)))
        return results
