"""Starting action, webhook and event workflows by name (the API never imports workflows/)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle

from orchestrator.temporal import names
from orchestrator.temporal.types import (
    DEFAULT_HEARTBEAT_TIMEOUT_S,
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


async def start_action(client: Client, job: ScriptJobInput, *, public_id: str, timeout_s: int, max_retries: int,
                       heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
                       prefix: str = "") -> WorkflowHandle[object, ScriptJobResult]:
    """Start an ActionWorkflow; its result is the job's result, and a failed action fails the workflow."""
    return await client.start_workflow(
        "ActionWorkflow", ActionWorkflowInput(job, timeout_s, max_retries, heartbeat_timeout_s),
        id=f"action:{names.escape(job.environment)}:{public_id}",
        task_queue=names.queue(prefix, names.ACTION_QUEUE), result_type=ScriptJobResult,
        search_attributes=names.search_attributes(job.environment, job.integration, job.connection_id,
                                                  job.script_name, "action"),
        execution_timeout=timedelta(seconds=timeout_s * (1 + max_retries) + 300))


async def start_webhook(client: Client, inp: WebhookInput, *, public_id: str, timeout_s: int,
                        heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
                        prefix: str = "") -> WorkflowHandle[object, WebhookWorkflowResult]:
    """Start the WebhookWorkflow of one stored payload; its id is the payload's, so it starts once."""
    return await client.start_workflow(
        "WebhookWorkflow", WebhookWorkflowInput(inp, timeout_s, heartbeat_timeout_s),
        id=f"webhook:{names.escape(inp.environment)}:{public_id}",
        task_queue=names.queue(prefix, names.WEBHOOK_QUEUE), result_type=WebhookWorkflowResult,
        search_attributes=names.search_attributes(inp.environment, inp.integration, "", "", "webhook"))


async def run_event(client: Client, inp: EventInput, *, timeout_s: int,
                    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S, prefix: str = "",
                    wait: bool = True) -> list[ScriptJobResult] | None:
    """Start an EventWorkflow; with wait, return one result per job of `inp`, in order."""
    handle = await client.start_workflow(
        "EventWorkflow", EventWorkflowInput(inp, timeout_s, heartbeat_timeout_s),
        id=f"event:{names.escape(inp.environment)}:{uuid.uuid4()}",
        task_queue=names.queue(prefix, names.EVENT_QUEUE), result_type=EventWorkflowResult,
        search_attributes=names.search_attributes(inp.environment, inp.integration, inp.connection_id,
                                                  inp.event, "event"))
    if not wait:
        return None
    return (await handle.result()).results
