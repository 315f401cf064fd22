"""One Temporal Schedule per (connection, sync): created, re-timed, paused, triggered, removed.

The platform never overwrites a schedule: it creates missing ones, deletes orphans, changes an
interval with `handle.update()` touching only the spec, and pauses with a note. The interval it
last wrote travels in the schedule action's memo, so a spec that differs from it was edited by
someone else (the Temporal UI) and is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.temporal import names
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

    @property
    def edited_elsewhere(self) -> bool:
        return self.interval_s is not None and self.written_interval_s is not None and \
            self.interval_s != self.written_interval_s


def _interval_of(desc: ScheduleDescription) -> int | None:
    intervals = desc.schedule.spec.intervals
    return int(intervals[0].every.total_seconds()) if intervals else None


def _memo(desc: ScheduleDescription) -> dict[str, Any]:
    action = desc.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.memo:
        return {}
    out: dict[str, Any] = {}
    for key, value in action.memo.items():
        if hasattr(value, "data"):  # a raw Payload when read back from the server
            import json
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


async def ensure(
    client: Client, sync: SyncInput, *, interval: timedelta, task_queue: str, paused: bool = False,
    source: str = "default",
) -> bool:
    """Create the schedule if it is missing (running once now: the initial sync). True if created."""
    sid = names.sync_schedule_id(sync.environment, sync.integration, sync.connection_id, sync.sync_name,
                                 sync.variant)
    interval_s = int(interval.total_seconds())
    schedule = Schedule(
        action=_action(sync, task_queue, interval_s, source),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE, pause_on_failure=False),
        state=ScheduleState(paused=paused, note="created paused (auto_start: false)" if paused else "created"),
    )
    try:
        await client.create_schedule(
            sid, schedule, trigger_immediately=not paused,
            search_attributes=names.search_attributes(sync.environment, sync.integration, sync.connection_id,
                                                      sync.sync_name))
        return True
    except ScheduleAlreadyRunningError:
        return False


async def describe(client: Client, schedule_id: str) -> ScheduleView | None:
    try:
        desc = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return view(schedule_id, desc)


async def set_interval(client: Client, schedule_id: str, interval: timedelta, *, source: str,
                       only_if_following_default: bool = False) -> bool:
    """Re-time a schedule, touching only its spec and the memo of what we wrote.

    With `only_if_following_default`, a schedule that carries a per-connection override or was
    edited elsewhere (spec differs from what we last wrote) is left alone. True if changed.
    """
    interval_s = int(interval.total_seconds())
    changed = False

    def updater(inp: ScheduleUpdateInput) -> ScheduleUpdate | None:
        nonlocal changed
        desc = inp.description
        memo = _memo(desc)
        current = _interval_of(desc)
        if only_if_following_default:
            if memo.get(MEMO_SOURCE, "default") != "default":
                return None
            if memo.get(MEMO_INTERVAL) is not None and current != memo.get(MEMO_INTERVAL):
                return None
        if current == interval_s and memo.get(MEMO_SOURCE) == source and memo.get(MEMO_INTERVAL) == interval_s:
            return None
        schedule = desc.schedule
        schedule.spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)])
        action = schedule.action
        if isinstance(action, ScheduleActionStartWorkflow):
            action.memo = {MEMO_INTERVAL: interval_s, MEMO_SOURCE: source}
        changed = True
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(schedule_id).update(updater)
    return changed


async def pause(client: Client, schedule_id: str, note: str) -> None:
    await client.get_schedule_handle(schedule_id).pause(note=note)


async def unpause(client: Client, schedule_id: str, note: str) -> None:
    await client.get_schedule_handle(schedule_id).unpause(note=note)


async def trigger(client: Client, schedule_id: str) -> None:
    await client.get_schedule_handle(schedule_id).trigger(overlap=ScheduleOverlapPolicy.BUFFER_ONE)


async def delete(client: Client, schedule_id: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id).delete()
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def list_intervals(client: Client, prefix: str) -> dict[str, int | None]:
    """Schedule id -> interval in seconds, for every schedule whose id starts with prefix (one listing)."""
    out: dict[str, int | None] = {}
    async for entry in await client.list_schedules():
        if entry.id.startswith(prefix):
            spec = entry.schedule.spec if entry.schedule else None
            intervals = spec.intervals if spec else []
            out[entry.id] = int(intervals[0].every.total_seconds()) if intervals else None
    return out


async def list_ids(client: Client, prefix: str) -> list[str]:
    ids: list[str] = []
    async for entry in await client.list_schedules():
        if entry.id.startswith(prefix):
            ids.append(entry.id)
    return ids


def now() -> datetime:
    return datetime.now(UTC)
