"""Retries made visible: every attempt of a job's run is counted on the job, and a retry writes one
platform line in the job's log saying what failed and where the new attempt resumes.

Temporal retries a run's activity after an infrastructure fault (a lost worker, the database or
Temporal unavailable); the new attempt learns what happened from Temporal (`activity.info().attempt`,
the last failure and worker of the pending activity, the previous attempt's heartbeat details),
gathered on the activity side (activities/boundary.py `attempt_info`) into an `Attempt`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from orchestrator.store import jobs as jobs_repo

log = structlog.get_logger(__name__)

# Exception type names that mean "PostgreSQL could not be reached", whatever layer reported them.
_DATABASE_TYPES = ("Postgres", "asyncpg", "ConnectionDoesNotExist", "CannotConnectNow", "InterfaceError",
                   "TooManyConnections", "AdminShutdown", "CrashShutdown", "ConnectionFailure",
                   "InternalClientError", "DatabaseError")
_DATABASE_WORDS = ("postgres", "database", "asyncpg", "connection was closed", "pool", "cannot connect now",
                   "connectiondoesnotexist", "shutting down")
_TEMPORAL_WORDS = ("temporal", "rpcerror", "grpc", "unavailable", "deadline exceeded")


@dataclass(frozen=True)
class Attempt:
    """One attempt of a run's activity, and what Temporal said about the attempt before it."""

    number: int = 1  # activity.info().attempt: 1 for the first try
    failure_type: str | None = None  # the previous attempt's failure: "timeout:HEARTBEAT", an error type, ...
    failure_message: str | None = None
    previous_worker: str | None = None  # the identity of the worker that ran the previous attempt
    previous_progress: dict[str, Any] = field(default_factory=dict)  # its last heartbeat details

    @property
    def is_retry(self) -> bool:
        return self.number > 1


def cause(attempt: Attempt) -> str:
    """What failed, in an operator's words: worker lost, database unavailable, Temporal unavailable, or the
    platform's own message (a transient fault it reported)."""
    kind, message = attempt.failure_type or "", (attempt.failure_message or "").strip()
    low = f"{kind} {message}".lower()
    worker = f" (worker {attempt.previous_worker})" if attempt.previous_worker else ""
    if kind == "timeout:HEARTBEAT" or (not kind and not message):
        return (f"worker lost{worker}: the previous attempt stopped heartbeating (the worker was killed, "
                "stopped, or cut off from Temporal) and its heartbeat timed out")
    if kind == "WorkerLost":  # an action's local activity, taken over after its workflow task timed out
        return (f"worker lost{worker}: its workflow task timed out (the worker was killed, stopped, or cut off "
                "from Temporal) and another worker took the run over")
    if kind.startswith("timeout:"):
        return f"the previous attempt timed out ({kind.removeprefix('timeout:').lower().replace('_', '-')}){worker}"
    if any(t in kind for t in _DATABASE_TYPES) or any(w in low for w in _DATABASE_WORDS):
        return f"database unavailable{worker}: {message or kind}"
    if any(w in low for w in _TEMPORAL_WORDS):
        return f"Temporal unavailable{worker}: {message or kind}"
    if kind == "WorkerShutdown" or "shutdown" in low or "shut down" in low:
        return f"worker shut down{worker}: {message or kind}"
    return f"the previous attempt failed{worker}: {kind + ': ' if kind else ''}{message}"


def retry_line(attempt: Attempt, *, resumes: str) -> str:
    """The job log's platform line for a retry."""
    return f"platform: attempt {attempt.number} of this run started after {cause(attempt)}; it resumes {resumes}"


async def record(conn: asyncpg.Connection, job_id: int, attempt: Attempt, *, resumes: str = "from the start") -> None:
    """Count the attempt on the job (idempotent per attempt number) and, on a retry, say why in its log."""
    await jobs_repo.add_attempt(conn, job_id, attempt=attempt.number)
    if not attempt.is_retry:
        return
    line = retry_line(attempt, resumes=resumes)
    log.warning("run_retried", job_id=job_id, attempt=attempt.number, cause=cause(attempt), resumes=resumes)
    await jobs_repo.add_logs(conn, job_id, [("warn", line, {
        "platform": True, "attempt": attempt.number, "cause": cause(attempt), "resumes": resumes,
        "previous_failure_type": attempt.failure_type})])
