"""A 24 h sync run stays far below Temporal's history limits (issue 23, point 4).

Temporal terminates a run at 51,200 history events (or 50 MB). What adds events to a SyncWorkflow run:
four activities (3 events each: scheduled, started, completed), the workflow tasks between them, and
each `report_progress` signal (the signal plus, usually, a workflow task: up to 4 events). Heartbeats add
none, and neither do activity retries (a retried activity writes one `started` event, with its attempt
count, when it finally completes). So the budget is the signals: ProgressThrottle sends at most one per
PROGRESS_SIGNAL_INTERVAL_S (30 s) and PROGRESS_SIGNALS_PER_RUN (200) in all, whatever the attempts.

The test runs the real SyncWorkflow on the test Temporal server with stand-in activities, time-scaled:
the stand-in run reports progress every beat, through the real progress reporter and throttle, with the
throttle's interval divided by SCALE, for the scaled equivalent of RUN_HOURS hours, dying once mid-run
(a retry, resuming with the signals it sent counted). It reads the history, computes events per hour of
run, and asserts the 24 h projection stays under 10% of 51,200 events.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from temporalio import activity
from temporalio.worker import Worker

from activities.sync import PROGRESS_SIGNALS_PER_RUN, ProgressThrottle, progress_reporter, signals_sent
from orchestrator.temporal.types import (
    FinalizeInput,
    NotifyInput,
    NotifyResult,
    PreparedSync,
    RunSyncInput,
    RunSyncResult,
    SyncInput,
    SyncSummary,
)
from tests.conftest import Stack
from workflows.sync import SyncWorkflow

LIMIT = 51_200
SCALE = 3000.0  # simulated seconds per real second: 30 s between signals becomes 10 ms
RUN_HOURS = 6.0  # well past the point where the per-run cap stops the signals (200 x 30 s = 100 min)
BEAT_S = 5.0 / SCALE  # the stand-in reports progress every (scaled) 5 s, as often as the run did


@activity.defn(name="prepare_sync")
async def prepare_sync(sync: SyncInput) -> PreparedSync:
    return PreparedSync(job_id=1, connection_pk=1, bundle_key="k", bundle_sha256="s", module_path="m",
                        started_at=datetime.now(UTC).isoformat(), timeout_s=3600, heartbeat_timeout_s=30)


@activity.defn(name="run_sync_script")
async def run_sync_script(inp: RunSyncInput) -> RunSyncResult:
    info = activity.info()
    throttle = ProgressThrottle(interval=30.0 / SCALE, sent=signals_sent(info.heartbeat_details))
    report = progress_reporter(inp, throttle)
    assert report is not None
    done = RUN_HOURS * 3600 / SCALE
    # the first attempt dies a quarter in (a retry, whose events count too); the second runs the rest
    until = done / 4 if info.attempt == 1 else done * 3 / 4
    start = time.monotonic()
    added = 0
    while time.monotonic() - start < until:
        added += 7
        progress = {"added": added, "updated": 0, "deleted": 0, "models": {"M": {"added": added}}}
        activity.heartbeat({**progress, "progress_signals": throttle.sent})
        await report(progress, False)
        await asyncio.sleep(BEAT_S)
    if info.attempt == 1:
        raise RuntimeError("worker lost (stand-in)")
    await report({"added": added, "updated": 0, "deleted": 0, "models": {"M": {"added": added}}}, True)
    return RunSyncResult(counts={"M": {"added": added, "updated": 0, "deleted": 0}})


@activity.defn(name="finalize_sync")
async def finalize_sync(inp: FinalizeInput) -> SyncSummary:
    return SyncSummary(inp.prepared.job_id, "success" if inp.success else "failed", {}, inp.error)


@activity.defn(name="notify_sync")
async def notify_sync(inp: NotifyInput) -> NotifyResult:
    return NotifyResult()


async def test_a_24h_run_stays_under_a_tenth_of_temporal_s_history_limit(stack: Stack) -> None:
    queue = f"history-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    async with Worker(stack.client, task_queue=queue, workflows=[SyncWorkflow],
                      activities=[prepare_sync, run_sync_script, finalize_sync, notify_sync]):
        handle = await stack.client.start_workflow(
            "SyncWorkflow", SyncInput(1, "env", "github", "conn-1", "issues"), id=f"history-{uuid.uuid4().hex}",
            task_queue=queue)
        summary = await asyncio.wait_for(handle.result(), 120)
    hours = (time.monotonic() - began) * SCALE / 3600  # the run's scaled duration, retry backoff included
    assert summary["status"] == "success"
    history = await handle.fetch_history()
    events = history.events
    kinds: dict[str, int] = {}
    for e in events:
        kind = e.WhichOneof("attributes") or "?"
        kinds[kind] = kinds.get(kind, 0) + 1
    signals = kinds.get("workflow_execution_signaled_event_attributes", 0)
    size = len(history.to_json())
    per_hour = len(events) / hours
    linear = per_hour * 24  # an overestimate: the cap stops the signals after 100 minutes
    # the steady rate of the run's last third, carried on to 24 h: what a longer run would add
    t0 = events[0].event_time.ToDatetime()
    at = [(e.event_time.ToDatetime() - t0).total_seconds() * SCALE / 3600 for e in events]
    late = sum(1 for h in at if h >= hours * 2 / 3)
    steady = late / (hours / 3)
    projected = len(events) + steady * max(0.0, 24 - hours)
    print(f"\nhistory of a scaled {hours:.1f} h run with one retry: {len(events)} events ({signals} signals, "
          f"{size:,} bytes of JSON); {per_hour:.0f} events per hour of run on average, {steady:.0f} per hour "
          f"in its last third; 24 h projected {projected:.0f} events = {projected / LIMIT:.1%} of {LIMIT} "
          f"(linear from the average: {linear:.0f} = {linear / LIMIT:.1%}); by kind: {kinds}")
    # the cap, plus the final report (always sent) and one per retry (sent after its last heartbeat)
    assert signals <= PROGRESS_SIGNALS_PER_RUN + 2
    assert projected < LIMIT * 0.10
    assert linear < LIMIT * 0.10
    assert size < 50 * 1024 * 1024 * 0.10
    started = [e for e in events if e.WhichOneof("attributes") == "activity_task_started_event_attributes"]
    assert max(e.activity_task_started_event_attributes.attempt for e in started) == 2  # the retry happened
