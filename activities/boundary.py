"""The Temporal boundary every activity goes through: log context in, platform errors out.

`@boundary` sits under each `@activity.defn`, so every log line of an activity carries its
correlation keys (activity, workflow and run ids, environment, integration, connection, script,
job) and every OrchestratorError leaves as an ApplicationError that says whether a retry can
help: terminal errors become non-retryable, transient ones are retried by the workflow's policy.
A database error no retry can fix (store/faults.py) leaves as a non-retryable DatabaseError.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.errors import DatabaseError, OrchestratorError
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
