"""Sync activities: thin adapters from Temporal to `orchestrator.runs.sync`.

They bind log context, heartbeat, and translate errors in one place: terminal errors (a script
bug, a bad config) become non-retryable ApplicationErrors, everything else is retried.
"""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.errors import OrchestratorError
from orchestrator.runs import notify
from orchestrator.runs import sync as sync_runs
from orchestrator.runs.deps import RunDeps
from orchestrator.temporal.types import (
    FinalizeInput,
    NotifyInput,
    PreparedSync,
    RunSyncInput,
    RunSyncResult,
    SyncInput,
    SyncProgress,
    SyncSummary,
)


def translate(exc: OrchestratorError) -> BaseException:
    if exc.terminal:
        return ApplicationError(exc.message, exc.fields.get("traceback", ""), type=type(exc).__name__,
                                non_retryable=True)
    return ApplicationError(exc.message, type=type(exc).__name__)


class SyncActivities:
    def __init__(self, deps: RunDeps) -> None:
        self.deps = deps

    def _bind(self, sync: SyncInput) -> None:
        info = activity.info()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            activity=info.activity_type, workflow_id=info.workflow_id, environment=sync.environment,
            integration=sync.integration, connection=sync.connection_id, sync=sync.sync_name)

    @activity.defn(name="prepare_sync")
    async def prepare_sync(self, sync: SyncInput) -> PreparedSync:
        self._bind(sync)
        info = activity.info()
        try:
            return await sync_runs.prepare(self.deps, sync, workflow_id=info.workflow_id,
                                           run_id=info.workflow_run_id)
        except OrchestratorError as exc:
            raise translate(exc) from exc

    @activity.defn(name="run_sync_script")
    async def run_sync_script(self, inp: RunSyncInput) -> RunSyncResult:
        self._bind(inp.sync)
        structlog.contextvars.bind_contextvars(job_id=inp.prepared.job_id)
        try:
            return await sync_runs.run(self.deps, inp.sync, inp.prepared, heartbeat=activity.heartbeat,
                                       on_progress=self._reporter(inp))
        except OrchestratorError as exc:
            raise translate(exc) from exc

    @activity.defn(name="finalize_sync")
    async def finalize_sync(self, inp: FinalizeInput) -> SyncSummary:
        self._bind(inp.sync)
        try:
            return await sync_runs.finalize(self.deps, inp)
        except OrchestratorError as exc:
            raise translate(exc) from exc

    @activity.defn(name="notify_sync")
    async def notify_sync(self, inp: NotifyInput) -> int:
        self._bind(inp.finalize.sync)
        return await notify.notify_sync(self.deps, inp.finalize, inp.summary)

    def _reporter(self, inp: RunSyncInput):  # type: ignore[no-untyped-def]
        """Send progress to the run workflow so its `progress` query answers with live counts."""
        client = self.deps.temporal
        if client is None:
            return None
        handle = client.get_workflow_handle(activity.info().workflow_id, run_id=activity.info().workflow_run_id)

        async def report(progress: dict) -> None:  # type: ignore[type-arg]
            await handle.signal("report_progress", SyncProgress(
                phase="running", job_id=inp.prepared.job_id, added=progress.get("added", 0),
                updated=progress.get("updated", 0), deleted=progress.get("deleted", 0),
                extra={"models": progress.get("models", {})}))
        return report

    def all(self) -> list[object]:
        return [self.prepare_sync, self.run_sync_script, self.finalize_sync, self.notify_sync]
