"""One Temporal Schedule per (connection, sync): created, re-timed, paused, triggered, removed.

The platform never overwrites a schedule edited elsewhere: it creates missing ones, deletes orphans, changes
an interval (spec and the memo of what it wrote) and pauses with a note. The interval it last wrote travels
in the schedule action's memo, so a spec that differs from it was edited by someone else (the Temporal UI)
and is kept. The same two values are kept per schedule id in PostgreSQL (`store/schedule_intervals.py`),
written by `ensure`, `set_interval` and `retime_listed`, so a deploy re-times from the listing without a
describe per schedule (see `retime_listed` for what that costs in exactness).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.api.workflowservice.v1 import UpdateScheduleRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleListDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.store import schedule_intervals
from orchestrator.store.schedule_intervals import Written
from orchestrator.temporal import names
from orchestrator.temporal.spec_text import spec_text
from orchestrator.temporal.types import SyncInput

MEMO_INTERVAL = "nango_interval_s"
MEMO_SOURCE = "nango_interval_source"  # "default" (deployed runs) or "override" (per connection)


@dataclass
class ScheduleView:
    """What a schedule says, as GET /sync/status and the dashboard report it."""

    schedule_id: str
    interval_s: int | None
    paused: bool
    note: str
    next_run: datetime | None
    recent_runs: list[dict[str, Any]]
    written_interval_s: int | None
    interval_source: str
    running_workflow_ids: list[str]
    frequency: str | None = None  # the whole spec said in one line (`spec_text`)

    @property
    def edited_elsewhere(self) -> bool:
        """Set by someone else: an interval other than the one we wrote, or a spec we never write (days of the
        week, a cron string, several rules: `interval_s` is None then)."""
        if self.interval_s is None:
            return self.frequency is not None
        return self.written_interval_s is not None and self.interval_s != self.written_interval_s


def _plain_interval_s(spec: ScheduleSpec | None) -> int | None:
    """The interval of a spec shaped as the platform writes it (one interval, nothing else), else None."""
    if spec is None or len(spec.intervals) != 1 or spec.calendars or spec.cron_expressions:
        return None
    return int(spec.intervals[0].every.total_seconds())


def _interval_of(desc: ScheduleDescription) -> int | None:
    return _plain_interval_s(desc.schedule.spec)


def _memo(desc: ScheduleDescription) -> dict[str, Any]:
    action = desc.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.memo:
        return {}
    out: dict[str, Any] = {}
    for key, value in action.memo.items():
        if hasattr(value, "data"):  # a raw Payload when read back from the server
            try:
                out[key] = json.loads(value.data)
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def view(schedule_id: str, desc: ScheduleDescription) -> ScheduleView:
    memo = _memo(desc)
    info = desc.info
    return ScheduleView(
        schedule_id=schedule_id,
        interval_s=_interval_of(desc),
        paused=desc.schedule.state.paused,
        note=desc.schedule.state.note or "",
        next_run=info.next_action_times[0] if info.next_action_times else None,
        recent_runs=[{"scheduled_at": a.scheduled_at, "started_at": a.started_at,
                      "workflow_id": getattr(a.action, "workflow_id", None)} for a in info.recent_actions],
        written_interval_s=memo.get(MEMO_INTERVAL),
        interval_source=memo.get(MEMO_SOURCE, "default"),
        running_workflow_ids=[getattr(a, "workflow_id", "") for a in info.running_actions],
        frequency=spec_text(desc.schedule.spec),
    )


def _action(sync: SyncInput, task_queue: str, interval_s: int, source: str) -> ScheduleActionStartWorkflow:
    return ScheduleActionStartWorkflow(
        names.SYNC_WORKFLOW, sync,
        id=names.sync_schedule_id(sync.environment, sync.integration, sync.connection_id, sync.sync_name,
                                  sync.variant),
        task_queue=task_queue,
        typed_search_attributes=names.search_attributes(sync.environment, sync.integration, sync.connection_id,
                                                        sync.sync_name),
        memo={MEMO_INTERVAL: interval_s, MEMO_SOURCE: source},
    )


def _spec(interval: timedelta, phase: timedelta) -> ScheduleSpec:
    """Every `interval`, at `phase` folded into it (Temporal's offset).

    A new schedule's phase is its creation time, so it runs one interval after its initial run, as Nango anchors
    syncs; without an offset Temporal counts from the epoch: every schedule of a frequency fires in the same
    second, and one created a moment before a boundary runs again right after its initial run. A re-timing
    passes the schedule's current offset, so a deploy that changes the frequency of many schedules leaves them
    as spread out as they were.
    """
    every = max(int(interval.total_seconds()), 1)
    offset = timedelta(seconds=int(phase.total_seconds()) % every)
    return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval, offset=offset)])


def _offset_of(spec: ScheduleSpec | None) -> timedelta:
    """The first interval's offset; Temporal leaves a zero offset unset, and the SDK reads that as None (a
    schedule created on its interval's boundary, or whose interval was set in the Temporal UI)."""
    intervals = spec.intervals if spec else []
    return (intervals[0].offset or timedelta(0)) if intervals else timedelta(0)


def _schedule(sync: SyncInput, task_queue: str, interval: timedelta, source: str, *, paused: bool,
              note: str, phase: timedelta) -> Schedule:
    """The whole schedule as the platform defines it: `ensure` creates it, `retime_listed` sends it again."""
    return Schedule(
        action=_action(sync, task_queue, int(interval.total_seconds()), source),
        spec=_spec(interval, phase),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE, pause_on_failure=False),
        state=ScheduleState(paused=paused, note=note),
    )


async def ensure(
    client: Client, sync: SyncInput, *, interval: timedelta, task_queue: str, pool: asyncpg.Pool,
    paused: bool = False, source: str = "default",
) -> bool:
    """Create the schedule if it is missing (running once now: the initial sync). True if created."""
    sid = names.sync_schedule_id(sync.environment, sync.integration, sync.connection_id, sync.sync_name,
                                 sync.variant)
    interval_s = int(interval.total_seconds())
    schedule = _schedule(sync, task_queue, interval, source, paused=paused,
                         note="created paused (auto_start: false)" if paused else "created",
                         phase=timedelta(seconds=time.time()))
    try:
        await client.create_schedule(
            sid, schedule, trigger_immediately=not paused,
            search_attributes=names.search_attributes(sync.environment, sync.integration, sync.connection_id,
                                                      sync.sync_name))
    except ScheduleAlreadyRunningError:
        return False
    await schedule_intervals.record(pool, sid, interval_s, source, held=paused)  # created paused: not re-timed blind
    return True


async def _description(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def describe(client: Client, schedule_id: str) -> ScheduleView | None:
    desc = await _description(client, schedule_id)
    return view(schedule_id, desc) if desc is not None else None


async def set_interval(client: Client, schedule_id: str, interval: timedelta, *, source: str, pool: asyncpg.Pool,
                       only_if_following_default: bool = False) -> bool:
    """Re-time a schedule, touching only its spec and the memo of what we wrote (a describe, then an update).

    With `only_if_following_default`, a schedule that carries a per-connection override or was
    edited elsewhere (spec differs from what we last wrote) is left alone. True if changed. Either way
    the memo's values are recorded in PostgreSQL, so the next deploy can skip the describe.
    """
    interval_s = int(interval.total_seconds())
    changed = False
    written: Written | None = None

    def updater(inp: ScheduleUpdateInput) -> ScheduleUpdate | None:
        nonlocal changed, written
        desc = inp.description
        memo = _memo(desc)
        current = _interval_of(desc)
        if isinstance(memo.get(MEMO_INTERVAL), int):
            written = Written(memo[MEMO_INTERVAL], memo.get(MEMO_SOURCE, "default"))
        if only_if_following_default:
            if memo.get(MEMO_SOURCE, "default") != "default":
                return None
            if memo.get(MEMO_INTERVAL) is not None and current != memo.get(MEMO_INTERVAL):
                return None
        if current == interval_s and memo.get(MEMO_SOURCE) == source and memo.get(MEMO_INTERVAL) == interval_s:
            return None
        schedule = desc.schedule
        schedule.spec = _spec(interval, _offset_of(schedule.spec))
        action = schedule.action
        if isinstance(action, ScheduleActionStartWorkflow):
            action.memo = {MEMO_INTERVAL: interval_s, MEMO_SOURCE: source}
        changed = True
        written = Written(interval_s, source)
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id).update(updater)
    if written is not None:
        await schedule_intervals.record(pool, schedule_id, written.interval_s, written.source)
    return changed


@dataclass(frozen=True)
class Listed:
    """A schedule as the listing shows it (Temporal's visibility store: it may lag a change by a moment)."""

    interval_s: int | None
    paused: bool
    note: str
    offset: timedelta = timedelta(0)


def _listed(entry: ScheduleListDescription) -> Listed:
    spec = entry.schedule.spec if entry.schedule else None
    state = entry.schedule.state if entry.schedule else None
    return Listed(interval_s=_plain_interval_s(spec),
                  paused=bool(state and state.paused), note=(state.note if state else None) or "",
                  offset=_offset_of(spec))


LIST_PAGE_SIZE = 200  # schedules per listing page; a re-timing is sent at most about two pages after its listing


_PLAIN = re.compile(r"[A-Za-z0-9._-]+")


def integration_query(environment: str, integration: str) -> str | None:
    """A listing query for one integration's schedules by the search attributes `ensure` gives each, so the
    listing skips the namespace's other schedules; None when a name would need quoting (then list them all)."""
    if not (_PLAIN.fullmatch(environment) and _PLAIN.fullmatch(integration)):
        return None
    return f'{names.SA_ENVIRONMENT.name} = "{environment}" AND {names.SA_INTEGRATION.name} = "{integration}"'


async def list_pages(client: Client, prefix: str, *, query: str | None = None, page_size: int = LIST_PAGE_SIZE
                     ) -> AsyncIterator[dict[str, Listed]]:
    """The schedules (matching `query`, if given) page by page, keeping those whose id starts with prefix."""
    pages = await client.list_schedules(query, page_size=page_size)
    while True:
        await pages.fetch_next_page()
        yield {e.id: _listed(e) for e in pages.current_page or [] if e.id.startswith(prefix)}
        if not pages.next_page_token:
            return


async def retime_listed(client: Client, sync: SyncInput, interval: timedelta, *, task_queue: str,
                        pool: asyncpg.Pool, listed: Listed, written: Written | None) -> bool:
    """Re-time a schedule that follows the deployed default, from its listing and its PostgreSQL row alone.

    Nothing to do when the row says we already wrote this interval as the default: the listing lags behind
    the updates a deploy has just sent (by a minute measured after 2,000 of them on the dev server).

    No describe: when the row says we wrote the deployed default, the listed interval is still the one we
    wrote and the listing shows the schedule running, one UpdateSchedule sends the whole schedule as
    `ensure` defines it, unpaused, with the listed note. Anything else goes through `set_interval`
    (describe, the memo decides, the row is recorded): no row yet (a schedule from before the rows existed),
    an override, a listed interval that differs from the row (edited elsewhere, or a row out of step), or a
    schedule listed as paused (so a resume the listing does not show yet is never undone, and a paused
    schedule is never unpaused). True if changed.

    A pause sent by the platform (its API, `nango admin`, disabling a sync) marks the row held before it
    reaches Temporal, and the mark is read just before the update: such a schedule is described, so its pause
    is never undone however far the listing lags (only a pause sent between that read and the update landing
    could be: milliseconds on an idle server, 0.4-0.8 s per call with 64 in flight at 10,000 on the dev server).

    What remains: UpdateSchedule replaces the state and, without a describe, carries no conflict token. A
    pause made outside the platform (the Temporal UI, `temporal schedule toggle`) that reaches Temporal after
    the listing page showing the schedule running was read, or that the listing does not show yet, and before
    this update lands, is undone: the schedule runs again with the note it was listed with. The window is the
    time to re-time one or two pages (`LIST_PAGE_SIZE` schedules each) plus the listing's lag behind Temporal:
    the scheduler workflow publishes its state to visibility once it has processed the change, a minute or
    more behind after a mass change on the dev server (bench/README.md). Pause from the platform to be safe.
    An edit of the policy made in the Temporal UI (overlap, catch-up window) is also replaced by ours.
    """
    sid = names.sync_schedule_id(sync.environment, sync.integration, sync.connection_id, sync.sync_name,
                                 sync.variant)
    interval_s = int(interval.total_seconds())
    if listed.interval_s == interval_s or written == Written(interval_s, "default"):
        return False  # in line, or our update is sent and the listing has not caught up with it yet
    if listed.paused or written is None or written.source != "default" or written.interval_s != listed.interval_s \
            or await schedule_intervals.is_held(pool, sid):  # read now, not with the page: a pause just sent
        return await set_interval(client, sid, interval, source="default", pool=pool, only_if_following_default=True)
    schedule = _schedule(sync, task_queue, interval, "default", paused=False, note=listed.note,
                         phase=listed.offset)
    # the SDK's only public update is describe-then-update; this is its request without the describe
    await client.workflow_service.update_schedule(UpdateScheduleRequest(
        namespace=client.namespace, schedule_id=sid, schedule=await schedule._to_proto(client),
        identity=client.identity, request_id=str(uuid.uuid4())), retry=True)
    await schedule_intervals.record(pool, sid, interval_s, "default")
    return True


async def move(client: Client, old_id: str, sync: SyncInput, *, task_queue: str, pool: asyncpg.Pool) -> bool:
    """Re-create a schedule under the id of `sync` (its integration renamed) as it stands, then delete the old one.

    Kept: the spec (its phase, an edit made in the Temporal UI), the policy, the pause and its note, the memo
    and the PostgreSQL row of what we wrote. Nothing runs because of the move (no initial run). False when the
    old schedule does not exist. Callers hold the integration's reconcile lock, so no reconcile creates the
    new id meanwhile; if one exists anyway, it is kept as it is and the old one is deleted.
    """
    desc = await _description(client, old_id)
    if desc is None:
        return False
    memo = _memo(desc)
    interval_s = memo.get(MEMO_INTERVAL) if isinstance(memo.get(MEMO_INTERVAL), int) else _interval_of(desc)
    source = str(memo.get(MEMO_SOURCE, "default"))
    state = desc.schedule.state
    schedule = Schedule(action=_action(sync, task_queue, interval_s or 0, source), spec=desc.schedule.spec,
                        policy=desc.schedule.policy, state=ScheduleState(paused=state.paused, note=state.note))
    new_id = names.sync_schedule_id(sync.environment, sync.integration, sync.connection_id, sync.sync_name,
                                    sync.variant)
    try:
        await client.create_schedule(
            new_id, schedule, trigger_immediately=False,
            search_attributes=names.search_attributes(sync.environment, sync.integration, sync.connection_id,
                                                      sync.sync_name))
    except ScheduleAlreadyRunningError:
        pass
    else:
        await schedule_intervals.copy(pool, old_id, new_id)
    await delete(client, old_id, pool=pool)
    return True


async def pause(client: Client, schedule_id: str, note: str, *, pool: asyncpg.Pool | None = None) -> None:
    """Pause with a note. With the pool, the schedule's row is marked held first, so a deploy re-timing it
    meanwhile describes it instead of trusting a listing that still shows it running (`retime_listed`)."""
    if pool is not None:
        await schedule_intervals.set_held(pool, schedule_id, True)
    await client.get_schedule_handle(schedule_id).pause(note=note)


async def unpause(client: Client, schedule_id: str, note: str, *, pool: asyncpg.Pool | None = None) -> None:
    await client.get_schedule_handle(schedule_id).unpause(note=note)
    if pool is not None:
        await schedule_intervals.set_held(pool, schedule_id, False)


async def trigger(client: Client, schedule_id: str) -> None:
    await client.get_schedule_handle(schedule_id).trigger(overlap=ScheduleOverlapPolicy.BUFFER_ONE)


async def delete(client: Client, schedule_id: str, *, pool: asyncpg.Pool | None = None) -> bool:
    """Remove the schedule (and its PostgreSQL row when given the pool; a row left behind by a caller without
    it is harmless: it is replaced when the id is created again and purged by the next full reconcile)."""
    try:
        await client.get_schedule_handle(schedule_id).delete()
        found = True
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        found = False
    if pool is not None:
        await schedule_intervals.delete(pool, [schedule_id])
    return found


async def list_ids(client: Client, prefix: str) -> list[str]:
    ids: list[str] = []
    async for entry in await client.list_schedules():
        if entry.id.startswith(prefix):
            ids.append(entry.id)
    return ids


def now() -> datetime:
    return datetime.now(UTC)
