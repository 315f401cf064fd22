"""Activities for actions, webhook scripts and event scripts: thin adapters to orchestrator.runs.

Log context and error translation are `activities.boundary`'s job; run_script_job heartbeats
(its workflows give it a heartbeat timeout) so a lost worker is noticed and a cancel reaches it,
except as an action's local activity, which has no heartbeat (its workflow task timeout does that).
"""

from __future__ import annotations

from temporalio import activity

from activities.boundary import attempt_info, boundary
from orchestrator import metrics
from orchestrator.runs import scripts as script_runs
from orchestrator.runs import webhooks
from orchestrator.runs.deps import RunDeps
from orchestrator.temporal.types import (
    ScriptJobClosed,
    ScriptJobInput,
    ScriptJobResult,
    WebhookFinished,
    WebhookInput,
    WebhookTargets,
)


class ScriptActivities:
    def __init__(self, deps: RunDeps) -> None:
        self.deps = deps

    @activity.defn(name="run_script_job")
    @boundary
    async def run_script_job(self, inp: ScriptJobInput) -> ScriptJobResult:
        # an action runs as a local activity: nothing to heartbeat to (its workflow task keeps it alive)
        heartbeat = None if activity.info().is_local else activity.heartbeat
        result = await script_runs.run_job(self.deps, inp, heartbeat=heartbeat, attempt=await attempt_info())
        metrics.RUNS_FINISHED.labels(inp.environment, inp.integration, inp.kind,
                                     "success" if result.ok else "failed").inc()
        return result

    @activity.defn(name="fail_script_job")
    @boundary
    async def fail_script_job(self, inp: ScriptJobInput) -> ScriptJobClosed:
        await script_runs.fail_job(self.deps, inp.job_id, "the run could not complete: infrastructure retries "
                                                         "were exhausted (see the worker log)")
        metrics.RUNS_FINISHED.labels(inp.environment, inp.integration, inp.kind, "failed").inc()
        return ScriptJobClosed(inp.job_id)

    @activity.defn(name="route_webhook")
    @boundary
    async def route_webhook(self, inp: WebhookInput) -> WebhookTargets:
        return await webhooks.route(self.deps, inp)

    @activity.defn(name="finish_webhook")
    @boundary
    async def finish_webhook(self, inp: WebhookInput) -> WebhookFinished:
        await webhooks.finish(self.deps, inp)
        return WebhookFinished(inp.payload_id)

    def all(self) -> list[object]:
        return [self.run_script_job, self.fail_script_job, self.route_webhook, self.finish_webhook]
