"""Starting action, webhook and event workflows by name (the API never imports workflows/)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle

from orchestrator.temporal import names
from orchestrator.temporal.types import EventInput, ScriptJobInput, ScriptJobResult, WebhookInput


def _attrs(inp: ScriptJobInput | EventInput | WebhookInput, kind: str, script: str):  # type: ignore[no-untyped-def]
    return names.search_attributes(inp.environment, inp.integration, getattr(inp, "connection_id", ""), script, kind)


async def start_action(client: Client, job: ScriptJobInput, *, public_id: str, timeout_s: int, max_retries: int,
                       prefix: str = "") -> WorkflowHandle[object, ScriptJobResult]:
    return await client.start_workflow(
        "ActionWorkflow", args=[job, timeout_s, max_retries], id=f"action:{names.escape(job.environment)}:{public_id}",
        task_queue=names.queue(prefix, names.ACTION_QUEUE), result_type=ScriptJobResult,
        search_attributes=_attrs(job, "action", job.script_name),
        execution_timeout=timedelta(seconds=timeout_s * (1 + max_retries) + 300))


async def start_webhook(client: Client, inp: WebhookInput, *, public_id: str, timeout_s: int,
                        prefix: str = "") -> WorkflowHandle[object, int]:
    return await client.start_workflow(
        "WebhookWorkflow", args=[inp, timeout_s], id=f"webhook:{names.escape(inp.environment)}:{public_id}",
        task_queue=names.queue(prefix, names.WEBHOOK_QUEUE), result_type=int,
        search_attributes=names.search_attributes(inp.environment, inp.integration, "", "", "webhook"))


async def run_event(client: Client, inp: EventInput, *, timeout_s: int, prefix: str = "",
                    wait: bool = True) -> list[ScriptJobResult] | None:
    handle = await client.start_workflow(
        "EventWorkflow", args=[inp, timeout_s], id=f"event:{names.escape(inp.environment)}:{uuid.uuid4()}",
        task_queue=names.queue(prefix, names.EVENT_QUEUE), result_type=list[ScriptJobResult],
        search_attributes=names.search_attributes(inp.environment, inp.integration, inp.connection_id,
                                                        inp.event, "event"))
    if not wait:
        return None
    return await handle.result()
