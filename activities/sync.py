"""Sync activities: thin adapters from Temporal to `orchestrator.runs.sync`.

Log context and error translation are `activities.boundary`'s job. run_sync_script heartbeats
with the run's progress and signals it to the run workflow for its `progress` query, throttled
because every signal is an event in that workflow's history.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from temporalio import activity

from activities.boundary import attempt_info, boundary
from orchestrator.runs import alerts, notify
from orchestrator.runs import sync as sync_runs
from orchestrator.runs.deps import RunDeps
from orchestrator.runs.host import ProgressSink
from orchestrator.temporal.types import (
    FinalizeInput,
    NotifyInput,
    NotifyResult,
    PreparedSync,
    RunSyncInput,
    RunSyncResult,
    SyncInput,
    SyncProgress,
    SyncSummary,
)

PROGRESS_SIGNAL_INTERVAL_S = 30.0  # at most one `report_progress` signal per this many seconds...
PROGRESS_SIGNALS_PER_RUN = 200  # ...and at most this many per run (a 24 h sync stays a small history)


class ProgressThrottle:
    """Decides which progress reports become `report_progress` signals (each is a history event).

    The first report goes at once (the query shows counts early), then at most one per `interval`
    seconds and `cap` in all, counting the attempts before this one; the final report always goes
    unless it says nothing new. Past the cap the query keeps the last counts it got, while the
    activity's heartbeat details (the pending activity in the Temporal UI) stay live.
    """

    def __init__(self, interval: float = PROGRESS_SIGNAL_INTERVAL_S, cap: int = PROGRESS_SIGNALS_PER_RUN,
                 sent: int = 0) -> None:
        self.interval = interval
        self.cap = cap
        self.sent = sent
        self._last_at: float | None = None
        self._last: dict[str, Any] | None = None

    def allow(self, progress: dict[str, Any], now: float, *, final: bool = False) -> bool:
        """Whether to signal `progress` now; counts it as sent when it says yes."""
        if progress == self._last:
            return False
        if not final:
            if self.sent >= self.cap:
                return False
            if self._last_at is not None and now - self._last_at < self.interval:
                return False
        self.sent += 1
        self._last_at, self._last = now, dict(progress)
        return True


def signals_sent(heartbeat_details: Sequence[Any]) -> int:
    """Signals earlier attempts of this activity sent (kept in their heartbeat details), so the cap is per run."""
    last = heartbeat_details[-1] if heartbeat_details else None
    return int(last.get("progress_signals", 0)) if isinstance(last, dict) else 0


class SyncActivities:
    def __init__(self, deps: RunDeps) -> None:
        self.deps = deps

    @activity.defn(name="prepare_sync")
    @boundary
    async def prepare_sync(self, sync: SyncInput) -> PreparedSync:
        info = activity.info()
        return await sync_runs.prepare(self.deps, sync, workflow_id=info.workflow_id, run_id=info.workflow_run_id)

    @activity.defn(name="run_sync_script")
    @boundary
    async def run_sync_script(self, inp: RunSyncInput) -> RunSyncResult:
        throttle = ProgressThrottle(sent=signals_sent(activity.info().heartbeat_details))

        def heartbeat(progress: dict[str, Any]) -> None:
            activity.heartbeat({**progress, "progress_signals": throttle.sent})
        return await sync_runs.run(self.deps, inp.sync, inp.prepared, heartbeat=heartbeat,
                                   on_progress=progress_reporter(inp, throttle), attempt=await attempt_info())

    @activity.defn(name="finalize_sync")
    @boundary
    async def finalize_sync(self, inp: FinalizeInput) -> SyncSummary:
        return await sync_runs.finalize(self.deps, inp)

    @activity.defn(name="notify_sync")
    @boundary
    async def notify_sync(self, inp: NotifyInput) -> NotifyResult:
        if inp.summary.job_id is not None:
            await alerts.after_sync(self.deps, inp.finalize.sync, inp.finalize.prepared.connection_pk,
                                    inp.summary.job_id, inp.summary.status)
        return NotifyResult(delivered=await notify.notify_sync(self.deps, inp.finalize, inp.summary))

    def all(self) -> list[object]:
        return [self.prepare_sync, self.run_sync_script, self.finalize_sync, self.notify_sync]


def progress_reporter(inp: RunSyncInput, throttle: ProgressThrottle) -> ProgressSink | None:
    """Signal progress to the run workflow (through the worker's own client) when the throttle allows."""
    info = activity.info()
    try:
        client = activity.client()
    except RuntimeError:  # an ActivityEnvironment without a client: nobody to report to
        return None
    handle = client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)

    async def report(progress: dict[str, Any], final: bool) -> None:
        if not throttle.allow(progress, time.monotonic(), final=final):
            return
        await handle.signal("report_progress", SyncProgress(
            phase="running", job_id=inp.prepared.job_id, added=progress.get("added", 0),
            updated=progress.get("updated", 0), deleted=progress.get("deleted", 0),
            extra={"models": progress.get("models", {})}))
    return report
