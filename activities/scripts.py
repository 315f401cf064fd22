"""Activities for actions, webhook scripts and event scripts: thin adapters to orchestrator.runs.scripts."""

from __future__ import annotations

import structlog
from temporalio import activity

from activities.sync import translate
from orchestrator.errors import OrchestratorError
from orchestrator.runs import scripts as script_runs
from orchestrator.runs import webhooks
from orchestrator.runs.deps import RunDeps
from orchestrator.temporal.types import ScriptJobInput, ScriptJobResult, WebhookInput, WebhookTargets


class ScriptActivities:
    def __init__(self, deps: RunDeps) -> None:
        self.deps = deps

    @activity.defn(name="run_script_job")
    async def run_script_job(self, inp: ScriptJobInput) -> ScriptJobResult:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            activity="run_script_job", workflow_id=activity.info().workflow_id, environment=inp.environment,
            integration=inp.integration, connection=inp.connection_id, script=inp.script_name, kind=inp.kind,
            job_id=inp.job_id)
        try:
            return await script_runs.run_job(self.deps, inp)
        except OrchestratorError as exc:
            raise translate(exc) from exc

    @activity.defn(name="fail_script_job")
    async def fail_script_job(self, inp: ScriptJobInput) -> None:
        await script_runs.fail_job(self.deps, inp.job_id, "the run could not complete: infrastructure retries "
                                                         "were exhausted (see the worker log)")

    @activity.defn(name="route_webhook")
    async def route_webhook(self, inp: WebhookInput) -> WebhookTargets:
        try:
            return await webhooks.route(self.deps, inp)
        except OrchestratorError as exc:
            raise translate(exc) from exc

    @activity.defn(name="finish_webhook")
    async def finish_webhook(self, inp: WebhookInput) -> None:
        await webhooks.finish(self.deps, inp)

    def all(self) -> list[object]:
        return [self.run_script_job, self.fail_script_job, self.route_webhook, self.finish_webhook]
