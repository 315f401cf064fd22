"""Make Temporal's schedules match what is deployed: one per (connection, enabled sync).

Creates missing schedules, deletes orphans, re-times schedules that follow the deployed
default, and never touches a per-connection override or an edit made in the Temporal UI.
Runs under a PostgreSQL advisory lock per integration, so two reconcilers (two API replicas, a
deploy racing a connection creation) never duplicate or delete each other's work.

The database is read in three queries whatever the number of connections (plus one per listing page with
schedules to re-time); the Temporal calls (one per schedule to create, one to re-time when PostgreSQL holds
what we last wrote into it, else two: describe and update; one to delete) run RECONCILE_CONCURRENCY at a
time, because a deploy that re-times 10,000 schedules one call after the other takes minutes. The listing
is walked page by page and each page's re-timings are sent as it arrives, so the paused state and note each
one carries are a page or two old at most (see `schedules.retime_listed`). A schedule that fails does not
stop the others: every one is tried, then the failures are raised together, each naming its connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
import structlog
from temporalio.client import Client

from orchestrator.config.schedule import parse_schedule
from orchestrator.errors import TransientError
from orchestrator.platform import Platform
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import locks, schedule_intervals
from orchestrator.store import scripts as scripts_repo
from orchestrator.store import variants as variants_repo
from orchestrator.store.schedule_intervals import Written
from orchestrator.store.types import DeployedScript, Integration
from orchestrator.temporal import names, schedules
from orchestrator.temporal.types import SyncInput

log = structlog.get_logger(__name__)
T = TypeVar("T")


DEFAULT_FREQUENCY = "every 1d"  # a sync without `runs` in nango.yaml, as in Nango


def deployed_frequency(script: DeployedScript) -> str:
    """The interval a sync runs at without a per-connection override: its `runs`, else the default.

    The reconciler, the frequency reset and the dashboard all read it here, so they never disagree."""
    return script.config.get("runs") or DEFAULT_FREQUENCY


@dataclass
class ReconcileReport:
    created: list[str] = field(default_factory=list)
    retimed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # one entry per schedule Temporal refused: schedule_id, connection_id, sync, variant, error
    failed: list[dict[str, str]] = field(default_factory=list)


class ReconcileError(TransientError):
    """Some schedules could not be brought in line; the others were. Transient: the maintenance loop and the
    next deploy retry, and every field names what failed so nobody has to guess from a count."""

    code = "schedules_not_reconciled"


def _describe_failure(f: dict[str, str]) -> str:
    variant = f", variant {f['variant']}" if f["variant"] not in ("", "base") else ""
    return f"connection '{f['connection_id']}' (sync {f['sync']}{variant}): {f['error']}"


def _failure_error(integration: Integration, report: ReconcileReport) -> ReconcileError:
    shown = [_describe_failure(f) for f in report.failed[:10]]
    more = f"; and {len(report.failed) - 10} more" if len(report.failed) > 10 else ""
    return ReconcileError(
        f"{len(report.failed)} schedule(s) of integration '{integration.unique_key}' could not be updated in "
        f"Temporal (the others were; the maintenance loop retries): " + "; ".join(shown) + more,
        integration=integration.unique_key, failed=report.failed, created=len(report.created),
        retimed=len(report.retimed), deleted=len(report.deleted))


async def _bounded(limit: int, items: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
    """Run `work` over items, at most `limit` at a time (workers share one iterator: no task per item)."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await work(item)
    await asyncio.gather(*(worker() for _ in range(max(1, limit))))


@asynccontextmanager
async def reconcile_lock(pool: asyncpg.Pool, integration_id: int) -> AsyncIterator[None]:
    """One reconciler at a time per integration, across processes; a rename or a delete of the integration
    holds it too, so no reconcile creates a schedule under a key that is going away."""
    async with pool.acquire() as lock_conn:
        await locks.lock(lock_conn, "reconcile", integration_id)
        try:
            yield
        finally:
            await locks.unlock(lock_conn, "reconcile", integration_id)


async def reconcile_integration(platform: Platform, integration: Integration,
                                only_connections: Collection[int] | None = None) -> ReconcileReport:
    """Create, re-time and delete the integration's schedules (see the module docstring).

    With `only_connections` (connection pks: a connection just created or re-authorized), only their
    schedules are looked at, each by id, without listing the namespace and without deleting anything: the
    cost of adding a connection stays flat however many the integration already has.

    The integration is read again once the lock is held: a rename or a delete that held it meanwhile changed
    the key its schedule ids carry, or removed it (then there is nothing to do)."""
    pool, client = platform.pool, platform.temporal
    report = ReconcileReport()
    async with reconcile_lock(pool, integration.id):
        async with pool.acquire() as conn:
            current = await integrations_repo.by_id(conn, integration.id)
            if current is None:
                return report
            integration = current
            env = await environments_repo.by_id(conn, integration.environment_id)
            assert env is not None
            syncs = {s.name: s for s in await scripts_repo.list_for_integration(conn, integration.id)
                     if s.kind == "sync" and s.enabled}
            conns = await connections_repo.ids_for_integration(conn, integration.id)
            if only_connections is not None:
                wanted = set(only_connections)
                conns = {pk: cid for pk, cid in conns.items() if pk in wanted}
            pairs = [(c_pk, name, "base") for c_pk in conns for name in syncs]
            pairs += [(r["connection_pk"], r["sync_name"], r["variant"])
                      for r in await variants_repo.for_integration(conn, integration.id)
                      if r["sync_name"] in syncs and r["connection_pk"] in conns]
            overrides = await jobs_repo.frequency_overrides(conn, list(conns))
        queue = names.queue(platform.task_queue_prefix, names.SYNC_QUEUE)
        prefix = names.schedule_prefix(env.name, integration.unique_key)
        plan = {names.sync_schedule_id(env.name, integration.unique_key, conns[c_pk], name, variant):
                (c_pk, name, variant) for c_pk, name, variant in pairs}

        def failed(sid: str, exc: Exception) -> None:
            parsed = names.parse_schedule_id(sid) or {}
            report.failed.append({"schedule_id": sid, "connection_id": parsed.get("connection_id", sid),
                                  "sync": parsed.get("sync", "?"), "variant": parsed.get("variant", "base"),
                                  "error": f"{type(exc).__name__}: {exc}"})

        def target(sid: str) -> tuple[SyncInput, DeployedScript, str | None]:
            c_pk, name, variant = plan[sid]
            sync = SyncInput(env.id, env.name, integration.unique_key, conns[c_pk], name, variant)
            return sync, syncs[name], overrides.get((c_pk, name, variant))

        async def create(sid: str) -> None:
            try:
                if kind := await _create_one(platform, *target(sid), queue):
                    getattr(report, kind).append(sid)
            except Exception as exc:  # the other schedules still get their turn; raised together below
                failed(sid, exc)

        async def drop(sid: str) -> None:
            try:
                if await schedules.delete(client, sid, pool=pool):
                    report.deleted.append(sid)
            except Exception as exc:
                failed(sid, exc)

        async def retime(item: tuple[str, schedules.Listed, Written | None]) -> None:
            sid, shown, written = item
            sync, script, _ = target(sid)
            try:
                if await schedules.retime_listed(client, sync, parse_schedule(deployed_frequency(script)),
                                                 task_queue=queue, pool=pool, listed=shown, written=written):
                    report.retimed.append(sid)
            except Exception as exc:
                failed(sid, exc)

        limit = platform.settings.reconcile_concurrency
        listed: set[str] = set()
        if only_connections is None:
            await _walk_listing(client, pool, prefix, schedules.integration_query(env.name, integration.unique_key),
                                limit, listed, lambda sid, shown: sid in plan and
                                _needs_retime(target(sid), shown.interval_s), retime)
        # by id (ensure, then set_interval when it exists): every schedule of a few connections, or those
        # the listing did not show
        await _bounded(limit, [sid for sid in plan if sid not in listed], create)
        if only_connections is None:
            await _bounded(limit, [sid for sid in listed if sid not in plan], drop)
            async with pool.acquire() as conn:  # rows of schedules deleted by other paths
                await schedule_intervals.delete_unlisted(conn, prefix, listed | plan.keys())
    if report.created or report.retimed or report.deleted or report.failed:
        log.info("schedules_reconciled", integration=integration.unique_key, created=len(report.created),
                 retimed=len(report.retimed), deleted=len(report.deleted), failed=len(report.failed))
    if report.failed:
        raise _failure_error(integration, report)
    return report


async def _walk_listing(client: Client, pool: asyncpg.Pool, prefix: str, query: str | None, limit: int,
                        listed: set[str], due: Callable[[str, schedules.Listed], bool],
                        retime: Callable[[tuple[str, schedules.Listed, Written | None]], Awaitable[None]]) -> None:
    """List the schedules (those with the integration's search attributes, when `query` says so) page by page
    into `listed`, handing each due one (with its PostgreSQL row) to `limit`
    workers as its page arrives: the next page is read while the workers finish this one, and no sooner, so a
    re-timing is sent about two pages at most after the listing that showed its paused state and note."""
    queue: asyncio.Queue[tuple[str, schedules.Listed, Written | None] | None] = asyncio.Queue(
        maxsize=schedules.LIST_PAGE_SIZE)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            await retime(item)
    workers = [asyncio.create_task(worker()) for _ in range(max(1, limit))]
    try:
        async for page in schedules.list_pages(client, prefix, query=query):
            listed.update(page)
            if wanted := [sid for sid, shown in page.items() if due(sid, shown)]:
                async with pool.acquire() as conn:
                    rows = await schedule_intervals.for_ids(conn, wanted)
                for sid in wanted:
                    await queue.put((sid, page[sid], rows.get(sid)))
    finally:
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)


def _needs_retime(target: tuple[SyncInput, DeployedScript, str | None], listed_s: int | None) -> bool:
    """Only a schedule following the deployed default whose listed spec differs can need re-timing."""
    _, script, override = target
    return not override and listed_s != int(parse_schedule(deployed_frequency(script)).total_seconds())


async def _create_one(platform: Platform, sync: SyncInput, script: DeployedScript, override: str | None,
                      queue: str) -> str | None:
    """Create a schedule the listing did not show; returns 'created', 'retimed' or None (nothing to do)."""
    client, pool = platform.temporal, platform.pool
    interval = parse_schedule(override or deployed_frequency(script))
    if await schedules.ensure(client, sync, interval=interval, source="override" if override else "default",
                              task_queue=queue, pool=pool, paused=not script.config.get("auto_start", True)):
        return "created"
    sid = names.sync_schedule_id(sync.environment, sync.integration, sync.connection_id, sync.sync_name,
                                 sync.variant)
    if not override and await schedules.set_interval(client, sid, interval, source="default", pool=pool,
                                                     only_if_following_default=True):
        return "retimed"  # it exists: the listing lagged behind it, or only this connection was looked at
    return None
