"""Event scripts around a connection's life: validate-connection, post-connection-creation,
pre-connection-deletion. Each script run is a job; the EventWorkflow runs them in order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import structlog

from orchestrator.platform import Platform
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Connection, Environment
from orchestrator.temporal.starter import start_event
from orchestrator.temporal.types import EventInput, ScriptJobInput, ScriptJobResult

log = structlog.get_logger(__name__)

VALIDATE = "validate-connection"
POST_CREATION = "post-connection-creation"
PRE_DELETION = "pre-connection-deletion"


def listed_events(config: dict[str, Any]) -> list[str]:
    """The events a deployed event script runs on: its manifest's "events" when it is listed under several,
    else its one "event" (every manifest has it, older ones only it)."""
    events = config.get("events")
    if isinstance(events, list) and events:
        return [e for e in events if isinstance(e, str)]
    event = config.get("event")
    return [event] if isinstance(event, str) else []


async def _scripts_for(conn: asyncpg.Connection, connection: Connection, event: str) -> list[str]:
    return [s.name for s in await scripts_repo.list_for_integration(conn, connection.integration_id)
            if s.kind == "event" and s.enabled and event in listed_events(s.config)]


async def fire(platform: Platform, env: Environment, connection: Connection, event: str, *,
               wait: bool = True) -> list[ScriptJobResult]:
    """Run the integration's scripts for `event`; with wait, return their results (empty if none)."""
    pool = platform.pool
    timeout_s = platform.settings.runner_event_timeout_s
    async with pool.acquire() as conn:
        names = await _scripts_for(conn, connection, event)
        if not names:
            return []
        jobs = []
        for name in names:
            job_id = await jobs_repo.open_job(conn, environment_id=env.id, connection_pk=connection.id,
                                              script_name=name, kind="event", public_id=str(uuid.uuid4()),
                                              input={"event": event})
            jobs.append(ScriptJobInput(environment_id=env.id, environment=env.name,
                                       integration=connection.integration_key, connection_id=connection.connection_id,
                                       script_name=name, kind="event", job_id=job_id, event=event))
    inp = EventInput(env.id, env.name, connection.integration_key, connection.connection_id, event, jobs)
    try:
        handle = await start_event(platform, inp)
    except Exception as exc:
        await jobs_repo.close_unstarted(platform.pool, [j.job_id for j in jobs],
                                        f"the {event} scripts could not be started: {type(exc).__name__}: {exc}")
        raise
    if not wait:
        return []
    try:
        async with asyncio.timeout(timeout_s + 60):
            results = (await handle.result()).results
    except TimeoutError:
        log.warning("event_timed_out", event=event, connection=connection.connection_id)
        return [ScriptJobResult(False, error_type="TimeoutError",
                                error_message=f"{event} scripts did not finish within {timeout_s} s")]
    return results or []
