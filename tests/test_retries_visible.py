"""Retries are visible (issue 23, point 3): every attempt of a run is counted on its job, and a retry
writes a platform line in the job's log saying what failed and where it resumes, shown by GET /jobs/{id}.

Through the real stack: a sync runs on a separate `nango worker` process, which is killed with SIGKILL
mid-run; a second worker takes the run over once Temporal notices the lost heartbeat."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from orchestrator.runs.attempts import Attempt, cause, retry_line
from tests.conftest import Stack, setup_github
from tests.test_faults import PAGES, PER_PAGE, WorkerProcess, _at_least, _saved, _start_run, set_pause, slow_folder


def test_cause_names_what_failed() -> None:
    assert cause(Attempt(2, "timeout:HEARTBEAT", "activity Heartbeat timeout", "123@w1")).startswith(
        "worker lost (worker 123@w1)")
    assert cause(Attempt(2)).startswith("worker lost")  # nothing recorded: the worker vanished
    lost_action = cause(Attempt(2, "WorkerLost", "the worker running it was lost"))  # an action's local activity
    assert lost_action.startswith("worker lost") and "workflow task timed out" in lost_action
    assert cause(Attempt(2, "ConnectionDoesNotExistError", "connection was closed in the middle of operation")
                 ).startswith("database unavailable")
    assert cause(Attempt(2, "TransientError", "the run hit an infrastructure fault and will be retried: "
                         "batch_save: CannotConnectNowError: the database system is starting up")
                 ).startswith("database unavailable")
    assert cause(Attempt(2, "RPCError", "Connection refused: temporal at 127.0.0.1:7233")).startswith(
        "Temporal unavailable")
    line = retry_line(Attempt(3, "timeout:HEARTBEAT", None), resumes="from the script's last checkpoint")
    assert line.startswith("platform: attempt 3 of this run started after worker lost")
    assert line.endswith("it resumes from the script's last checkpoint")


async def test_a_killed_worker_s_run_counts_two_attempts_and_says_why_in_its_log(
        stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, folder=slow_folder(tmp_path, auto_start=False))
    prefix = f"r{uuid.uuid4().hex[:6]}-"
    first = WorkerProcess(stack, prefix, tmp_path)
    await first.start()
    handle = await _start_run(stack, gh, prefix)
    await _at_least(stack, gh, 4 * PER_PAGE)
    await first.kill()
    async with stack.pool.acquire() as conn:
        killed_at = await conn.fetchval("SELECT clock_timestamp()")
    await set_pause(stack, gh, 0)  # the retry need not be slow
    second = WorkerProcess(stack, prefix, tmp_path)
    await second.start()
    try:
        summary = await asyncio.wait_for(handle.result(), 90)
    finally:
        await second.stop()
    assert summary["status"] == "success"
    stored, _ = await _saved(stack, gh)
    assert stored == PAGES * PER_PAGE
    async with stack.pool.acquire() as conn:
        resumed_at = await conn.fetchval(
            "SELECT min(l.created_at) FROM script_logs l WHERE l.job_id = $1 AND l.fields->>'platform' = 'true'",
            summary["job_id"])
        ended = await conn.fetchval("SELECT ended_at FROM jobs WHERE id = $1", summary["job_id"])
    assert resumed_at is not None and ended is not None
    # measured for the closing note (RUNNER_HEARTBEAT_TIMEOUT_S=4 here, 30 by default)
    print(f"\nkilled worker's run resumed on the other worker {(resumed_at - killed_at).total_seconds():.1f} s "
          f"after the kill, with RUNNER_HEARTBEAT_TIMEOUT_S=4")
    async with stack.api(gh.key) as api:
        job = await api.get_job(summary["job_id"])
        logs = await api.job_logs(summary["job_id"])
    assert job["attempts"] == 2, job
    assert len(job["retries"]) == 1, job
    retry = job["retries"][0]
    assert retry["attempt"] == 2
    assert retry["cause"].startswith("worker lost"), retry
    assert retry["resumes"] == "from the script's last checkpoint", retry
    lines = [e["message"] for e in logs if (e["fields"] or {}).get("platform")]
    print("\n".join(lines))
    assert any(m.startswith("platform: attempt 2 of this run started after worker lost") and
               m.endswith("it resumes from the script's last checkpoint") for m in lines), lines
