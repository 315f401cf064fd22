"""SyncWorkflow: one run of one sync for one connection, started by its Schedule.

Deterministic only: activities are referenced by name, arguments are dataclasses passed through
the sandbox. A script's own failure fails this run (visible in the UI) while the schedule goes on.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from orchestrator.temporal.policies import INFRA_RETRY, NOTIFY_RETRY
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

SCRIPT_MARGIN = timedelta(minutes=5)
PREPARE_TIMEOUT = timedelta(minutes=2)
PREPARE_RUNS_LOCALLY = "prepare-sync-as-local-activity"  # workflow.patched id (issue 18)


@workflow.defn(name="SyncWorkflow")
class SyncWorkflow:
    def __init__(self) -> None:
        self._progress = SyncProgress()
        self._cancel_reason: str | None = None
        self._run: workflow.ActivityHandle[RunSyncResult] | None = None

    @workflow.query(name="progress")
    def progress(self) -> SyncProgress:
        return self._progress

    @workflow.signal(name="report_progress")
    def report_progress(self, progress: SyncProgress) -> None:
        self._progress = progress

    @workflow.signal(name="cancel")
    def cancel(self, reason: str = "cancelled by an operator") -> None:
        self._cancel_reason = reason
        if self._run is not None and not self._run.done():
            self._run.cancel()

    async def _prepare(self, sync: SyncInput) -> PreparedSync:
        """prepare_sync as a local activity: the job opens in the first workflow task, no dispatch before the
        script's (a run started before this change replays the regular activity its history holds)."""
        if workflow.patched(PREPARE_RUNS_LOCALLY):
            return await workflow.execute_local_activity(
                "prepare_sync", sync, result_type=PreparedSync, start_to_close_timeout=PREPARE_TIMEOUT,
                retry_policy=INFRA_RETRY)
        return await workflow.execute_activity(
            "prepare_sync", sync, result_type=PreparedSync, start_to_close_timeout=PREPARE_TIMEOUT,
            retry_policy=INFRA_RETRY)

    @workflow.run
    async def run(self, sync: SyncInput) -> SyncSummary:
        prepared = await self._prepare(sync)
        if prepared.skip_reason:
            workflow.logger.info("sync skipped: %s", prepared.skip_reason)
            return SyncSummary(None, "skipped", error=prepared.skip_reason)
        self._progress = SyncProgress(phase="running", job_id=prepared.job_id)
        error: str | None = None
        details: str | None = None
        cancelled = False
        if self._cancel_reason is None:
            self._run = workflow.start_activity(
                "run_sync_script", RunSyncInput(sync, prepared), result_type=RunSyncResult,
                start_to_close_timeout=timedelta(seconds=prepared.timeout_s) + SCRIPT_MARGIN,
                heartbeat_timeout=timedelta(seconds=prepared.heartbeat_timeout_s), retry_policy=INFRA_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
            try:
                await self._run
            except ActivityError as exc:
                cause = exc.cause
                if isinstance(cause, CancelledError):
                    cancelled, error = True, self._cancel_reason or "cancelled"
                else:
                    error = str(cause) if cause else str(exc)
                    if isinstance(cause, ApplicationError) and cause.details:
                        details = str(cause.details[0])
        else:
            cancelled, error = True, self._cancel_reason
        self._progress.phase = "finalizing"
        finalize = FinalizeInput(sync, prepared, success=error is None, error=error, error_details=details,
                                 cancelled=cancelled)
        summary: SyncSummary = await workflow.execute_activity(
            "finalize_sync", finalize, result_type=SyncSummary, start_to_close_timeout=timedelta(minutes=10),
            retry_policy=INFRA_RETRY)
        self._progress.phase = summary.status
        await workflow.execute_activity(
            "notify_sync", NotifyInput(finalize, summary),
            result_type=NotifyResult, start_to_close_timeout=timedelta(minutes=5), retry_policy=NOTIFY_RETRY)
        if error is not None and not cancelled:
            raise ApplicationError(f"sync '{sync.sync_name}' failed: {error}", details, type="ScriptError",
                                   non_retryable=True)
        return summary
