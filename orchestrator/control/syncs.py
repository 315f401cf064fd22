"""Per-sync controls, shared by the API, `nango admin` and the dashboard: one code path each.

Between runs everything is the schedule (pause with a note, unpause, trigger, interval); during
a run it is the run workflow's `cancel` signal. A full resync marks the sync's state "reset
requested", cancels a running run and triggers; `prepare_sync` reads and clears the mark.

Which trigger requests coalesce is the schedule's overlap policy, BUFFER_ONE: a trigger starts a run when none
runs, is queued behind a running run when none is queued yet, and otherwise joins the queued run (Temporal skips
it). `trigger_each` tells each caller which of these happened to its request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.config.schedule import parse_schedule
from orchestrator.control.reconcile import deployed_frequency, reconcile_integration
from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.platform import Platform
from orchestrator.store import connections as connections_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store import variants as variants_repo
from orchestrator.store.types import Connection, DeployedScript, Environment
from orchestrator.temporal import names, schedules, sync_runs
from orchestrator.timestamps import iso

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Target:
    """One (connection, sync) pair a control applies to."""

    connection: Connection
    script: DeployedScript
    variant: str = "base"

    def schedule_id(self, env: Environment) -> str:
        return names.sync_schedule_id(env.name, self.connection.integration_key, self.connection.connection_id,
                                      self.script.name, self.variant)


@dataclass
class SyncStatus:
    """One line of GET /sync/status, as Nango reports it."""

    data: dict[str, Any] = field(default_factory=dict)


async def targets(platform: Platform, env: Environment, integration_key: str,
                  syncs: list[str] | None, connection_id: str | None, variant: str = "base") -> list[Target]:
    """Resolve syncs x connections; unknown names are errors naming them."""
    pool, sealer = platform.pool, platform.sealer
    async with pool.acquire() as conn:
        integration = await integrations_repo.get(conn, env.id, integration_key)
        if integration is None:
            raise NotFoundError(f"no integration '{integration_key}' in environment '{env.name}'")
        deployed = {s.name: s for s in await scripts_repo.list_for_integration(conn, integration.id)
                    if s.kind == "sync"}
        wanted = list(deployed) if not syncs or syncs == ["*"] else syncs
        unknown = [s for s in wanted if s not in deployed]
        if unknown:
            raise NotFoundError(f"unknown sync(s) {', '.join(unknown)} for integration '{integration_key}'; "
                                f"deployed: {', '.join(sorted(deployed)) or 'none'}")
        if connection_id:
            found = await connections_repo.get(conn, sealer, env.id, integration_key, connection_id)
            if found is None:
                raise NotFoundError(f"no connection '{connection_id}' for integration '{integration_key}'")
            conns = [found]
        else:
            conns = await connections_repo.list_for_integration(conn, sealer, integration.id)
    return [Target(c, deployed[name], variant) for c in conns for name in wanted]


async def _handle_missing(fn: Any, *args: Any) -> bool:
    try:
        await fn(*args)
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def pause(platform: Platform, env: Environment, items: list[Target], note: str = "paused") -> int:
    """Pause each schedule with a note; returns how many schedules exist (a missing one is skipped)."""
    return sum([await _handle_missing(functools.partial(schedules.pause, pool=platform.pool), platform.temporal,
                                      t.schedule_id(env), note) for t in items])


async def resume(platform: Platform, env: Environment, items: list[Target], note: str = "resumed") -> int:
    """Unpause each schedule with a note; returns how many schedules exist (a missing one is skipped)."""
    return sum([await _handle_missing(functools.partial(schedules.unpause, pool=platform.pool), platform.temporal,
                                      t.schedule_id(env), note) for t in items])


async def cancel(platform: Platform, env: Environment, items: list[Target], reason: str = "cancelled") -> int:
    """Signal every running run of these syncs to stop; returns how many were running."""
    return await sync_runs.cancel_running(platform.temporal, [t.schedule_id(env) for t in items], reason)


Outcome = Literal["started", "queued", "coalesced", "requested", "no_schedule"]

# how long a trigger waits to see what the schedule did with it; past this it answers "requested"
OUTCOME_WAIT_S = 3.0
# schedules triggered at once by one request (every connection of an integration): each waits for its outcome
TRIGGER_CONCURRENCY = 16


@dataclass(frozen=True)
class Triggered:
    """What one trigger request became for one (connection, sync): said in the API's answer."""

    connection_id: str
    sync: str
    variant: str
    outcome: Outcome
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"connection_id": self.connection_id, "sync": self.sync, "variant": self.variant,
                "outcome": self.outcome, "detail": self.detail}


async def trigger(platform: Platform, env: Environment, items: list[Target], *,
                  full: bool = False, clear_cache: bool = False) -> int:
    """Run now (obeying the overlap policy); returns how many schedules took the request (see trigger_each)."""
    done = await trigger_each(platform, env, items, full=full, clear_cache=clear_cache)
    return sum(t.outcome != "no_schedule" for t in done)


async def trigger_each(platform: Platform, env: Environment, items: list[Target], *,
                       full: bool = False, clear_cache: bool = False) -> list[Triggered]:
    """Run now (obeying the overlap policy) and say what became of each request; a full resync resets state and
    stops a running run first, and with `clear_cache` (Nango's emptyCache) its run deletes the sync's records
    before it saves afresh."""
    pool, client = platform.pool, platform.temporal
    if full or clear_cache:
        resets = [(t.connection.id, t.script.name, t.variant) for t in items]
        await sync_runs.prepare_full_resync(client, pool, resets, [t.schedule_id(env) for t in items],
                                            clear_cache=clear_cache)
    gate = asyncio.Semaphore(TRIGGER_CONCURRENCY)

    async def one(t: Target) -> Triggered:
        async with gate:
            return await _trigger_one(client, t, t.schedule_id(env), full or clear_cache)
    async with asyncio.TaskGroup() as group:  # a failure cancels the others
        tasks = [group.create_task(one(t)) for t in items]
    return [task.result() for task in tasks]


async def _counters(client: Client, schedule_id: str) -> tuple[int, int, int]:
    """(runs started, runs queued, triggers skipped as overlapping): what tells a trigger's outcome apart."""
    info = (await client.get_schedule_handle(schedule_id).describe()).raw_description.info
    return info.action_count, info.buffer_size, info.overlap_skipped


async def _trigger_one(client: Client, t: Target, schedule_id: str, full: bool) -> Triggered:
    def said(outcome: Outcome, detail: str) -> Triggered:
        return Triggered(t.connection.connection_id, t.script.name, t.variant, outcome, detail)

    try:
        before = await _counters(client, schedule_id)
        await schedules.trigger(client, schedule_id)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return said("no_schedule", "no schedule for this sync and connection: nothing was triggered")
    # the schedule takes the trigger in its own workflow task: its counters show which way it went
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OUTCOME_WAIT_S
    after = before
    while after == before and loop.time() < deadline:
        await asyncio.sleep(0.02)
        after = await _counters(client, schedule_id)
    kind = "full resync" if full else "run"
    if after[0] > before[0]:
        return said("started", f"a {kind} started now")
    if after[2] > before[2]:
        return said("coalesced", "coalesced into the run already queued, which runs once the running one ends"
                    + (" and does the full resync" if full else ""))
    if after[1] > before[1]:
        return said("queued", f"a {kind} queued after the running run"
                    + (", which this full resync cancelled" if full else ", once it ends"))
    return said("requested", "the schedule took the request; what it did with it was not visible yet")


async def set_frequency(platform: Platform, env: Environment, items: list[Target],
                        frequency: str | None) -> str:
    """Per-connection interval; None goes back to the deployed `runs`. Returns the interval now in force."""
    pool, client = platform.pool, platform.temporal
    interval = parse_schedule(frequency) if frequency else None
    text = frequency
    for t in items:
        async with pool.acquire() as conn:
            await jobs_repo.set_frequency_override(conn, t.connection.id, t.script.name, t.variant, frequency)
        default = deployed_frequency(t.script)
        every = interval or parse_schedule(default)
        text = frequency or default
        try:
            await schedules.set_interval(client, t.schedule_id(env), every, pool=pool,
                                         source="override" if interval else "default")
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFoundError(f"no schedule for sync '{t.script.name}' of connection "
                                    f"'{t.connection.connection_id}'") from None
            raise
    return text or ""


def every_model(counts: dict[str, dict[str, int]], models: Iterable[str]) -> dict[str, dict[str, int]]:
    """A run's counts with every model of its sync, one it left unchanged at zeros, as Nango reports them."""
    zero = {"added": 0, "updated": 0, "deleted": 0}
    return {**{m: dict(zero) for m in models}, **{m: {**zero, **c} for m, c in counts.items()}}


def frequency_text(script: DeployedScript, override: str | None, view: schedules.ScheduleView | None) -> str | None:
    """The interval in force, said as Nango's status says it: the text it was set with (the connection's
    override, else the deployed `runs`); a spec set in the Temporal UI has no text and is written out
    ("every 45min", "cron 30 9 * * 1-5")."""
    if view is None:
        return None
    if view.edited_elsewhere:
        return view.frequency
    if view.interval_source == "override":
        return override or view.frequency
    return deployed_frequency(script)


async def status(platform: Platform, env: Environment, items: list[Target]) -> list[dict[str, Any]]:
    """What the schedules say plus each sync's last job: Nango's SyncStatus shape."""
    pool, client = platform.pool, platform.temporal
    out: list[dict[str, Any]] = []
    for t in items:
        view = await schedules.describe(client, t.schedule_id(env))
        async with pool.acquire() as conn:
            jobs = await jobs_repo.latest(conn, t.connection.id, t.script.name, t.variant, limit=1)
            state = await jobs_repo.get_state(conn, t.connection.id, t.script.name, t.variant)
            counts = {m: await records_repo.count(conn, records_repo.Scope(
                env.id, t.connection.id, m, t.variant)) for m in t.script.config.get("output") or []}
            job_workflow = jobs[0].workflow_id if jobs else None
        job = jobs[0] if jobs else None
        # A run whose job already closed is only finishing its bookkeeping (finalize, notify): what it
        # reported is final. A run that has not opened its job yet is running.
        running = (job is not None and job.status == "running") or any(
            wf != job_workflow for wf in (view.running_workflow_ids if view else []))
        if view is None:
            state_name = "STOPPED"
        elif view.paused:  # what operators asked for wins over a run still finishing
            state_name = "PAUSED"
        elif running:
            state_name = "RUNNING"
        elif job is not None and job.status == "failed":
            state_name = "ERROR"
        else:
            state_name = "SUCCESS"
        out.append({
            "id": f"{t.connection.id}:{t.script.name}:{t.variant}",
            "connection_id": t.connection.connection_id,
            "name": t.script.name,
            "variant": t.variant,
            "type": "INCREMENTAL" if state["last_success_at"] else "INITIAL",
            "status": state_name,
            "paused": bool(view and view.paused),
            "note": view.note if view else None,
            "frequency": frequency_text(t.script, state["frequency_override"], view),
            "frequency_source": ("ui" if view and view.edited_elsewhere else view.interval_source) if view else None,
            "finishedAt": iso(job.ended_at) if job else None,
            "nextScheduledSyncAt": iso(view.next_run) if view and not view.paused else None,
            "latestResult": every_model(job.counts, t.script.config.get("output") or []) if job else {},
            "latestExecutionStatus": job.status.upper() if job else None,
            "jobStatus": job.status.upper() if job else None,
            "error": job.error_text if job and job.status == "failed" else None,
            "recordCount": counts,
            "checkpoint": state["checkpoint"],
            "schedule_id": t.schedule_id(env),
        })
    return out



def parse_syncs(raw: Any) -> tuple[list[str], str]:
    """Nango sends syncs as names, `name::variant` strings, or {name, variant} objects."""
    names_: list[str] = []
    variant = "base"
    items = raw if isinstance(raw, list) else [raw] if raw else []
    for item in items:
        if isinstance(item, dict):
            if not item.get("name"):
                raise InvalidInputError("each sync object needs a 'name'")
            names_.append(str(item["name"]))
            variant = str(item.get("variant") or variant)
        elif isinstance(item, str):
            name, _, var = item.partition("::")
            if name:
                names_.append(name)
            if var:
                variant = var
        else:
            raise InvalidInputError(f"syncs must be names or {{name, variant}} objects, got {item!r}")
    return names_, variant


async def create_variant(platform: Platform, target: Target) -> None:
    """A variant of a sync for one connection: its own schedule, state and records."""
    pool = platform.pool
    from orchestrator.store import integrations as integrations_repo

    async with pool.acquire() as conn:
        await variants_repo.add(conn, target.connection.id, target.script.name, target.variant)
        rows = await integrations_repo.list_all(conn, target.connection.environment_id)
    integration = next(i for i in rows if i.id == target.connection.integration_id)
    await reconcile_integration(platform, integration, only_connections=[target.connection.id])


async def delete_variant(platform: Platform, env: Environment, target: Target) -> None:
    """Remove the variant's schedule, state and records."""
    pool, client = platform.pool, platform.temporal
    async with pool.acquire() as conn:
        existed = await variants_repo.delete(conn, target.connection.id, target.script.name, target.variant)
        if not existed:
            raise NotFoundError(f"no variant '{target.variant}' of sync '{target.script.name}' for connection "
                                f"'{target.connection.connection_id}'")
    await cancel(platform, env, [target], "variant deleted")
    await schedules.delete(client, target.schedule_id(env), pool=pool)
    async with pool.acquire() as conn, conn.transaction():
        await jobs_repo.delete_state(conn, target.connection.id, target.script.name, target.variant)
        # deleting the record scopes deletes their records (trigger, migration 0002)
        await records_repo.delete_scopes(conn, target.connection.id, list(target.script.config.get("output") or []),
                                         target.variant)
