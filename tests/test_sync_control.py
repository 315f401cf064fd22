"""Sync controls through the real stack: what operators do from the API, the CLI and the Temporal UI."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import ScheduleIntervalSpec, ScheduleSpec, ScheduleUpdate, ScheduleUpdateInput

from orchestrator.temporal import schedules
from tests.conftest import Stack, eventually, setup_github, wait_for_job


async def _status(stack: Stack, key: str) -> dict:
    async with stack.api(key) as api:
        body = await api.request("GET", "/sync/status", params={
            "syncs": "issues", "provider_config_key": "github", "connection_id": "conn-1"})
    assert len(body["syncs"]) == 1
    return body["syncs"][0]


async def test_status_reports_the_schedule_and_the_last_run(stack: Stack) -> None:
    gh = await setup_github(stack, issues=4)
    await wait_for_job(stack, gh)
    st = await _status(stack, gh.key)
    assert st["status"] == "SUCCESS"
    assert st["frequency"] == "every 5min"
    assert st["latestResult"] == {"GithubIssue": {"added": 4, "updated": 0, "deleted": 0}}
    assert st["recordCount"] == {"GithubIssue": 4}
    assert st["nextScheduledSyncAt"]


async def test_pause_resume_and_trigger_a_paused_sync_runs_once_and_stays_paused(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        body = {"syncs": ["issues"], "provider_config_key": "github", "connection_id": "conn-1"}
        await api.request("POST", "/sync/pause", json=body)
        st = await _status(stack, gh.key)
        assert st["status"] == "PAUSED" and st["paused"] and st["nextScheduledSyncAt"] is None
        view = await schedules.describe(stack.client, gh.schedule_id())
        assert view is not None and view.paused and view.note == "paused through the API"

        stack.demo.update_issue(gh.repo, 2, title="changed while paused")
        await api.request("POST", "/sync/trigger", json=body)
        jobs = await wait_for_job(stack, gh, count=2)
        assert jobs[0]["status"] == "success"
        assert (await _status(stack, gh.key))["paused"] is True

        await api.request("POST", "/sync/start", json=body)
        st = await _status(stack, gh.key)
        assert not st["paused"] and st["nextScheduledSyncAt"]


async def test_frequency_override_and_reset_to_default(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        body = {"sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1",
                "frequency": "every 2h"}
        assert await api.request("PUT", "/sync/update-connection-frequency", json=body) == {"frequency": "every 2h"}
        view = await schedules.describe(stack.client, gh.schedule_id())
        assert view is not None and view.interval_s == 7200 and view.interval_source == "override"
        body["frequency"] = None
        assert await api.request("PUT", "/sync/update-connection-frequency", json=body) == {
            "frequency": "every 5 minutes"}
        view = await schedules.describe(stack.client, gh.schedule_id())
        assert view is not None and view.interval_s == 300 and view.interval_source == "default"
        body["frequency"] = "every 2 fortnights"
        err = await api.request("PUT", "/sync/update-connection-frequency", json=body, ok=(400,))
        assert "invalid schedule 'every 2 fortnights'" in err["error"]["message"]


async def test_an_interval_edited_in_the_temporal_ui_is_reported(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)

    def edit(inp: ScheduleUpdateInput) -> ScheduleUpdate:
        sched = inp.description.schedule
        sched.spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=45))])
        return ScheduleUpdate(schedule=sched)

    await stack.client.get_schedule_handle(gh.schedule_id()).update(edit)
    st = await _status(stack, gh.key)
    assert st["frequency"] == "every 45min"
    assert st["frequency_source"] == "ui"


async def test_full_resync_resets_state_and_runs_without_last_sync_date(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.request("POST", "/sync/trigger", json={"syncs": ["issues"], "provider_config_key": "github",
                                                         "connection_id": "conn-1", "opts": {"reset": True}})
    jobs = await wait_for_job(stack, gh, count=2)
    async with stack.pool.acquire() as conn:
        full = await conn.fetchval("SELECT full_resync FROM sync_jobs WHERE id = $1", jobs[0]["id"])
    assert full is True
    # a full run asks upstream without `since`
    since_calls = [r for r in stack.demo.requests if r["path"] == f"/repos/{gh.repo}/issues"]
    assert "since" not in since_calls[-1]["query"]


async def test_unknown_sync_and_bad_bodies_get_clear_errors(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        err = await api.request("POST", "/sync/trigger", json={"syncs": ["nope"], "provider_config_key": "github"},
                                ok=(404,))
        assert "unknown sync(s) nope" in err["error"]["message"]
        err = await api.request("POST", "/sync/pause", json={"syncs": ["issues"]}, ok=(400,))
        assert "provider_config_key" in err["error"]["message"]

    async def gone() -> None:
        assert await schedules.describe(stack.client, gh.schedule_id()) is not None
    await eventually(gone)
