"""Starting action, webhook and event workflows by name (the API never imports workflows/).

Every start asks for eager start: where a worker for the task queue runs in this process on the same
client (`nango dev`, the tests, the benches), the server hands the first workflow task straight back to
it, with no task queue dispatch; elsewhere (a separate API process) the request is a no-op.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Protocol

from temporalio.client import Client, WorkflowHandle

from orchestrator.config.settings import Settings
from orchestrator.temporal import names
from orchestrator.temporal.types import (
    ActionWorkflowInput,
    EventInput,
    EventWorkflowInput,
    EventWorkflowResult,
    ScriptJobInput,
    ScriptJobResult,
    WebhookInput,
    WebhookWorkflowInput,
    WebhookWorkflowResult,
)


class Handles(Protocol):
    """What starting a workflow needs: `orchestrator.platform.Platform` (and the worker's RunDeps) has both."""

    @property
    def temporal(self) -> Client: ...

    @property
    def settings(self) -> Settings: ...


async def start_action(handles: Handles, job: ScriptJobInput, *, public_id: str,
                       max_retries: int) -> WorkflowHandle[object, ScriptJobResult]:
    """Start an ActionWorkflow; its result is the job's result, and a failed action fails the workflow."""
    settings = handles.settings
    timeout_s = settings.runner_action_timeout_s
    return await handles.temporal.start_workflow(
        "ActionWorkflow", ActionWorkflowInput(job, timeout_s, max_retries, settings.runner_heartbeat_timeout_s),
        id=f"action:{names.escape(job.environment)}:{public_id}",
        task_queue=names.queue(settings.task_queue_prefix, names.ACTION_QUEUE), result_type=ScriptJobResult,
        search_attributes=names.search_attributes(job.environment, job.integration, job.connection_id,
                                                  job.script_name, "action"),
        execution_timeout=timedelta(seconds=timeout_s * (1 + max_retries) + 300), request_eager_start=True)


async def start_webhook(handles: Handles, inp: WebhookInput, *,
                        public_id: str) -> WorkflowHandle[object, WebhookWorkflowResult]:
    """Start the WebhookWorkflow of one stored payload; its id is the payload's, so it starts once."""
    settings = handles.settings
    return await handles.temporal.start_workflow(
        "WebhookWorkflow",
        WebhookWorkflowInput(inp, settings.runner_webhook_timeout_s, settings.runner_heartbeat_timeout_s),
        id=f"webhook:{names.escape(inp.environment)}:{public_id}",
        task_queue=names.queue(settings.task_queue_prefix, names.WEBHOOK_QUEUE), result_type=WebhookWorkflowResult,
        search_attributes=names.search_attributes(inp.environment, inp.integration, "", "", "webhook"),
        request_eager_start=True)


async def start_event(handles: Handles, inp: EventInput) -> WorkflowHandle[object, EventWorkflowResult]:
    """Start an EventWorkflow; its result holds one result per job of `inp`, in order."""
    settings = handles.settings
    return await handles.temporal.start_workflow(
        "EventWorkflow",
        EventWorkflowInput(inp, settings.runner_event_timeout_s, settings.runner_heartbeat_timeout_s),
        id=f"event:{names.escape(inp.environment)}:{uuid.uuid4()}",
        task_queue=names.queue(settings.task_queue_prefix, names.EVENT_QUEUE), result_type=EventWorkflowResult,
        search_attributes=names.search_attributes(inp.environment, inp.integration, inp.connection_id,
                                                  inp.event, "event"), request_eager_start=True)
