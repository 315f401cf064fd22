"""POST /action/trigger and GET /action/{id}: actions run as ActionWorkflows, awaited or async."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.api.common import (
    connection_headers,
    environment,
    int_header,
    json_body,
    json_response,
    load_connection,
)
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.job_events import JobCloseListener
from orchestrator.store.types import Job
from orchestrator.temporal.starter import start_action
from orchestrator.temporal.types import ScriptJobInput, ScriptJobResult

routes = web.RouteTableDef()
JOB_CLOSES = web.AppKey("job_closes", JobCloseListener)


async def job_closes(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the platform's): the LISTEN connection awaited actions hear their job close on."""
    listener = JobCloseListener(app[PLATFORM].settings)
    await listener.start()
    app[JOB_CLOSES] = listener
    try:
        yield
    finally:
        await listener.close()


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action_name: str = Field(min_length=1)
    input: Any = None


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"



def answer(job: Job) -> web.Response:
    """The caller's view of a finished action job (the wire format Nango's clients expect)."""
    if job.status == "success":
        return web.Response(body=orjson.dumps(job.output), content_type="application/json")
    error = job.error_text or "action failed"
    error_type = job.error_type or ""
    if job.error_payload is not None or error_type.startswith("action_error"):
        return json_response({"error": {"code": "action_script_failure", "payload": job.error_payload,
                                        "message": (job.error if job.error_type else None) or error}}, status=400)
    if error_type.startswith(("invalid_input", "InputValidationError")):
        return json_response({"error": {"code": "invalid_action_input", "message": job.error or "",
                                        "job_id": str(job.public_id)}}, status=400)
    return json_response({"error": {"code": "action_script_failure", "message": error,
                                    "job_id": str(job.public_id)}}, status=500)


async def _job_row(request: web.Request, public_id: str) -> Job | None:
    async with request.app[PLATFORM].pool.acquire() as conn:
        return await jobs_repo.by_public_id(conn, public_id, environment(request).id, kind="action",
                                            with_counts=False)


@routes.post("/action/trigger")
async def trigger(request: web.Request) -> web.StreamResponse:
    body = TriggerBody.model_validate(await json_body(request))
    integration, connection_id = connection_headers(request)
    return await run_action(request, integration, connection_id, body.action_name, body.input)


async def run_action(request: web.Request, integration: str, connection_id: str, action_name: str,
                     action_input: Any) -> web.StreamResponse:
    """Run a deployed, enabled action for the connection and answer with its output (or, with
    `X-Async: true`, 202 and where to fetch it); `X-Max-Retries` is read from the request.
    Shared by POST /action/trigger and the unified endpoints (/v1/...)."""
    max_retries = int_header(request, "X-Max-Retries", 5)
    wait = not _flag(request.headers.get("X-Async"))
    run = await execute_action(request, integration, connection_id, action_name, action_input,
                               max_retries=max_retries, wait=wait)
    if not wait:
        status_url = f"/action/{run.public_id}"
        return web.Response(body=orjson.dumps({"id": run.public_id, "statusUrl": status_url}), status=202,
                            content_type="application/json", headers={"Location": status_url})
    if run.failed is not None:
        return answer(run.failed)
    return web.Response(body=orjson.dumps(run.output), content_type="application/json")


@dataclass(frozen=True)
class ActionRun:
    """An action run: its job's public id, then, once awaited, its output or the job row that says why it failed."""

    public_id: str
    output: Any = None
    failed: Job | None = None


async def execute_action(request: web.Request, integration: str, connection_id: str, action_name: str,
                         action_input: Any, *, max_retries: int, wait: bool = True) -> ActionRun:
    """Open the action's job and start its ActionWorkflow, awaiting it unless `wait` is false: the one path
    every way of running an action takes (POST /action/trigger, /v1/..., the MCP server's tool calls).
    An unknown connection or action raises the API's 404."""
    env = environment(request)
    connection = await load_connection(request, integration, connection_id)
    async with request.app[PLATFORM].pool.acquire() as conn:
        script = await scripts_repo.get(conn, connection.integration_id, "action", action_name)
        if script is None or not script.enabled:
            deployed = [s.name for s in await scripts_repo.list_for_integration(conn, connection.integration_id)
                        if s.kind == "action" and s.enabled]
            raise_error(404, "unknown_action", f"no action '{action_name}' is deployed for integration "
                        f"'{integration}'; deployed: {', '.join(deployed) or 'none'}")
        public_id = str(uuid.uuid4())
        job_id = await jobs_repo.open_job(conn, environment_id=env.id, connection_pk=connection.id,
                                          script_name=action_name, kind="action", public_id=public_id,
                                          input=action_input)
    job = ScriptJobInput(environment_id=env.id, environment=env.name, integration=integration,
                         connection_id=connection_id, script_name=action_name, kind="action", job_id=job_id,
                         input=action_input)
    if not wait:
        await _start(request, job, public_id, max_retries)
        return ActionRun(public_id)
    closes = request.app.get(JOB_CLOSES)
    closed = closes.expect(job_id) if closes is not None else None  # before the job can close
    try:
        handle = await _start(request, job, public_id, max_retries)
        return await _await_action(request, handle.result(), closed, public_id)
    finally:
        if closes is not None:
            closes.forget(job_id)


async def _start(request: web.Request, job: ScriptJobInput, public_id: str,
                 max_retries: int) -> WorkflowHandle[object, ScriptJobResult]:
    """Start the action's workflow; if it cannot start, its job is closed (never left running) and the caller is
    told why: an input Temporal refuses (over its payload size limit, 2 MB by default) is the caller's to fix."""
    try:
        return await start_action(request.app[PLATFORM], job, public_id=public_id, max_retries=max_retries)
    except Exception as exc:
        why = f"the action could not be started: {type(exc).__name__}: {exc}"
        await jobs_repo.close_unstarted(request.app[PLATFORM].pool, [job.job_id], why)
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.INVALID_ARGUMENT:
            size = len(orjson.dumps(job.input))
            raise_error(400, "action_not_started", f"Temporal refused to start action '{job.script_name}' "
                        f"({exc.message}); its input is {size:,} bytes of JSON, and Temporal's payload size "
                        "limit is 2 MB unless its server sets another")
        raise


async def _await_action(request: web.Request, workflow_result: Awaitable[ScriptJobResult],
                        closed: asyncio.Future[None] | None, public_id: str) -> ActionRun:
    """The answer, from whichever comes first: the job row once the worker says it closed it (no wait for
    Temporal to complete the workflow and return it), or the workflow's result (retries exhausted, a lost
    notification). Both say the same: the workflow ends only after the job is closed with its outcome."""
    result_task = asyncio.ensure_future(workflow_result)
    try:
        if closed is not None:
            await asyncio.wait({result_task, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not result_task.done():
                job = await _job_row(request, public_id)
                if job is not None and job.status != "running":
                    return _finished(public_id, job)
        try:
            result = await result_task
        except WorkflowFailureError:
            return _finished(public_id, await _job_row(request, public_id))  # the job row holds what happened
    finally:
        if not result_task.done():
            result_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await result_task
    if result.ok:  # the workflow succeeds only once the job is closed with this very output
        return ActionRun(public_id, result.output)
    return _finished(public_id, await _job_row(request, public_id))


def _finished(public_id: str, job: Job | None) -> ActionRun:
    if job is None:
        raise_error(500, "action_script_failure", f"action run {public_id} has no job row")
    return ActionRun(public_id, job.output) if job.status == "success" else ActionRun(public_id, failed=job)


@routes.get("/action/{id}")
async def result(request: web.Request) -> web.Response:
    public_id = request.match_info["id"]
    try:
        uuid.UUID(public_id)
    except ValueError:
        raise_error(400, "invalid_uri_params", f"action id must be a UUID, got {public_id!r}")
    row = await _job_row(request, public_id)
    if row is None:
        raise_error(404, "not_found", f"no action run {public_id}")
    if row.status == "running":
        raise_error(404, "not_found", f"action run {public_id} has not finished yet")
    return answer(row)
