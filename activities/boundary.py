"""The Temporal boundary every activity goes through: log context in, platform errors out.

`@boundary` sits under each `@activity.defn`, so every log line of an activity carries its
correlation keys (activity, workflow and run ids, environment, integration, connection, script,
job) and every OrchestratorError leaves as an ApplicationError that says whether a retry can
help: terminal errors become non-retryable, transient ones are retried by the workflow's policy.
A database error no retry can fix (store/faults.py) leaves as a non-retryable DatabaseError.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from temporalio import activity
from temporalio.api.enums.v1 import TimeoutType
from temporalio.exceptions import ApplicationError

from orchestrator.errors import DatabaseError, OrchestratorError
from orchestrator.runs.attempts import Attempt
from orchestrator.store import faults
from orchestrator.temporal.types import (
    FinalizeInput,
    NotifyInput,
    RunSyncInput,
    ScriptJobInput,
    SyncInput,
    WebhookInput,
)

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

log = structlog.get_logger(__name__)


def translate(exc: OrchestratorError) -> ApplicationError:
    """The Temporal failure for a platform error: terminal ones carry the traceback and are never retried."""
    if exc.terminal:
        return ApplicationError(exc.message, exc.fields.get("traceback", ""), type=type(exc).__name__,
                                non_retryable=True)
    return ApplicationError(exc.message, type=type(exc).__name__)


def log_context(inp: object) -> dict[str, Any]:
    """The correlation keys an activity input knows (the same key names whatever the run kind)."""
    match inp:
        case SyncInput():
            return {"environment": inp.environment, "integration": inp.integration,
                    "connection": inp.connection_id, "sync": inp.sync_name}
        case RunSyncInput():
            return {**log_context(inp.sync), "job_id": inp.prepared.job_id}
        case FinalizeInput():
            return {**log_context(inp.sync), "job_id": inp.prepared.job_id}
        case NotifyInput():
            return {**log_context(inp.finalize), "job_id": inp.summary.job_id}
        case ScriptJobInput():
            return {"environment": inp.environment, "integration": inp.integration, "connection": inp.connection_id,
                    "script": inp.script_name, "kind": inp.kind, "job_id": inp.job_id}
        case WebhookInput():
            return {"environment": inp.environment, "integration": inp.integration, "payload_id": inp.payload_id}
    return {}


def boundary(fn: Callable[[S, I], Awaitable[R]]) -> Callable[[S, I], Awaitable[R]]:
    """Wrap an activity method: fresh log context bound from its input, platform errors translated."""
    @functools.wraps(fn)
    async def wrapper(self: S, inp: I) -> R:
        info = activity.info()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(activity=info.activity_type, workflow_id=info.workflow_id,
                                               run_id=info.workflow_run_id, **log_context(inp))
        try:
            return await fn(self, inp)
        except OrchestratorError as exc:
            raise translate(exc) from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if faults.is_transient(exc):
                raise  # the retry policy retries it
            # the same statement fails the same way on every retry: never retried without end
            raise translate(DatabaseError(f"the database refused a write: {faults.describe(exc)}")) from exc
    return wrapper


async def attempt_info() -> Attempt:
    """This attempt of the running activity and, on a retry, what Temporal recorded about the one before:
    its last failure and worker (from the workflow's pending activity) and its last heartbeat details."""
    info = activity.info()
    details = info.heartbeat_details
    last = details[-1] if details else None
    previous = dict(last) if isinstance(last, dict) else {}
    if info.attempt <= 1:
        return Attempt(number=info.attempt)
    failure_type = failure_message = worker = None
    try:
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        async with asyncio.timeout(5):
            desc = await handle.describe()
        for pending in desc.raw_description.pending_activities:
            if pending.activity_id != info.activity_id:
                continue
            worker = pending.last_worker_identity or None
            if pending.HasField("last_failure"):
                failure_type, failure_message = _failure_kind(pending.last_failure)
    except Exception as exc:  # Temporal's account is best effort: the attempt still counts
        log.info("previous_attempt_unknown", error=f"{type(exc).__name__}: {exc}")
    return Attempt(number=info.attempt, failure_type=failure_type, failure_message=failure_message,
                   previous_worker=worker, previous_progress=previous)


def _failure_kind(failure: Any) -> tuple[str | None, str | None]:
    """(kind, message) of a Temporal Failure proto: "timeout:HEARTBEAT" for a timeout, else the error type."""
    if failure.HasField("timeout_failure_info"):
        name = TimeoutType.Name(failure.timeout_failure_info.timeout_type).removeprefix("TIMEOUT_TYPE_")
        return f"timeout:{name}", failure.message
    if failure.HasField("application_failure_info"):
        return failure.application_failure_info.type or None, failure.message
    if failure.HasField("server_failure_info"):
        return "TemporalServerError", failure.message
    if failure.HasField("canceled_failure_info"):
        return "Cancelled", failure.message
    return None, failure.message
