"""Sync controls through the real stack: what operators do from the API, the CLI and the Temporal UI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.temporal import schedules
from tests.conftest import Stack, eventually, setup_github, wait_for_job
from tests.test_variants_intervals import ui_retime


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
    assert st["frequency"] == "every 5 minutes"
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


async def test_a_schedule_runs_one_interval_after_its_creation_and_keeps_its_phase_when_re_timed(
        stack: Stack) -> None:
    """Anchored at creation as Nango does: not at the epoch's 5-minute marks, where every schedule of the
    frequency would fire in the same second and one created just before a mark would run twice at once."""
    created = datetime.now(UTC)
    gh = await setup_github(stack, issues=1)
    view = await schedules.describe(stack.client, gh.schedule_id())
    assert view is not None and view.next_run is not None
    assert abs((view.next_run - created).total_seconds() - 300) < 5, (created, view.next_run)
    async with stack.api(gh.key) as api:  # 5 min -> 2 h: runs stay at the same phase within the hour
        await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1",
            "frequency": "every 2h"})
    retimed = await schedules.describe(stack.client, gh.schedule_id())
    assert retimed is not None and retimed.interval_s == 7200 and retimed.next_run is not None
    assert retimed.next_run.timestamp() % 300 == view.next_run.timestamp() % 300, (view.next_run, retimed.next_run)


async def test_a_schedule_on_its_interval_s_boundary_is_re_timed_through_the_api(stack: Stack) -> None:
    """Temporal leaves a zero offset unset: a schedule created on its interval's boundary (one in `every` of
    them) or re-timed in the Temporal UI has none, and changing its frequency keeps it on the boundary."""
    gh = await setup_github(stack, issues=1)
    await ui_retime(stack, gh.schedule_id(), timedelta(minutes=5))  # the same interval, its offset gone
    async with stack.api(gh.key) as api:
        assert await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1",
            "frequency": "every 2h"}) == {"frequency": "every 2h"}
    view = await schedules.describe(stack.client, gh.schedule_id())
    assert view is not None and view.interval_s == 7200 and view.next_run is not None
    assert view.next_run.timestamp() % 7200 == 0, view.next_run


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
    await ui_retime(stack, gh.schedule_id(), timedelta(minutes=45))
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
        full = await conn.fetchval("SELECT full_resync FROM jobs WHERE id = $1", jobs[0]["id"])
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


async def test_a_script_that_raises_fails_the_job_with_its_traceback_and_the_schedule_goes_on(
        stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from tests.conftest import EXAMPLES

    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(
        "def helper():\n    raise KeyError('missing upstream field')\n\n"
        "async def fetch_data(nango):\n    await nango.log('starting')\n    helper()\n\n"
        "async def on_webhook(nango, payload):\n    pass\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    jobs = await wait_for_job(stack, gh, status="failed")
    assert "missing upstream field" in jobs[0]["error"]
    async with stack.pool.acquire() as conn:
        details = await conn.fetchval("SELECT error_details FROM jobs WHERE id = $1", jobs[0]["id"])
        logs = await conn.fetch("SELECT message FROM script_logs WHERE job_id = $1", jobs[0]["id"])
    assert "in helper" in details and "KeyError" in details
    assert [r["message"] for r in logs] == ["starting"]
    async def errored() -> dict:
        # the run workflow finishes its finalize/notify steps just after the job closes: RUNNING until then
        st = await _status(stack, gh.key)
        assert st["status"] == "ERROR", st
        return st
    st = await eventually(errored, timeout=30)
    assert not st["paused"] and st["nextScheduledSyncAt"]
    view = await schedules.describe(stack.client, gh.schedule_id())
    assert view is not None and not view.paused


async def test_progress_query_and_cancel_of_a_running_sync(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from tests.conftest import EXAMPLES

    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(
        "import asyncio\n\nasync def fetch_data(nango):\n"
        "    for i in range(600):\n"
        "        await nango.batch_save([{'id': str(i), 'number': i, 'title': 't', 'body': None, 'state': 'open',"
        " 'url': 'u', 'author': None, 'labels': [], 'created_at': 'c', 'updated_at': 'u', 'closed_at': None}],"
        " 'GithubIssue')\n"
        "        await asyncio.sleep(0.05)\n\n"
        "async def on_webhook(nango, payload):\n    pass\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    view = await eventually(lambda: _running(stack, gh.schedule_id()), timeout=30)
    handle = stack.client.get_workflow_handle(view.running_workflow_ids[0])

    async def progressing() -> None:
        progress = await handle.query("progress")
        assert progress["phase"] == "running" and progress["added"] > 0, progress
    await eventually(progressing, timeout=30)

    from orchestrator.control import syncs as sync_control

    async with stack.pool.acquire() as conn:
        from orchestrator.store import environments as environments_repo
        env = await environments_repo.by_name(conn, gh.env)
    async with stack.platform() as platform:
        items = await sync_control.targets(platform, env, "github", ["issues"], "conn-1")
        assert await sync_control.cancel(platform, env, items, "stop it") == 1
    jobs = await wait_for_job(stack, gh, status="cancelled")
    assert jobs[0]["error"] == "stop it"


async def _running(stack: Stack, sid: str):  # type: ignore[no-untyped-def]
    view = await schedules.describe(stack.client, sid)
    assert view is not None and view.running_workflow_ids
    return view


async def test_reconciler_recreates_a_lost_schedule_and_keeps_overrides(stack: Stack) -> None:
    from orchestrator.control import maintenance

    gh = await setup_github(stack, issues=1)
    other = await setup_github(stack, issues=1)
    async with stack.api(other.key) as api:
        await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1",
            "frequency": "every 3h"})
    await schedules.delete(stack.client, gh.schedule_id())
    assert await schedules.describe(stack.client, gh.schedule_id()) is None
    async with stack.pool.acquire() as conn:  # (every environment would redo the schedules of earlier tests too)
        envs = {r["id"] for r in await conn.fetch("SELECT id FROM environments WHERE name = any($1::text[])",
                                                  [gh.env, other.env])}
    async with stack.platform() as platform:
        assert await maintenance.reconcile_all(platform, environment_ids=envs) == 2
    view = await schedules.describe(stack.client, gh.schedule_id())
    assert view is not None and view.interval_s == 300
    kept = await schedules.describe(stack.client, other.schedule_id())
    assert kept is not None and kept.interval_s == 3 * 3600 and kept.interval_source == "override"


async def test_the_temporal_cli_sees_and_edits_our_schedules(stack: Stack) -> None:
    """The README's admin commands, run with the real `temporal` binary."""
    import asyncio

    from orchestrator.devstack.temporal import temporal_cli

    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            temporal_cli(), *args, "--address", stack.settings.temporal_address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        return out.decode()

    assert gh.schedule_id() in await cli("schedule", "list")
    await cli("schedule", "toggle", "--schedule-id", gh.schedule_id(), "--pause", "--reason", "paused from the CLI")
    st = await _status(stack, gh.key)
    assert st["status"] == "PAUSED" and st["note"] == "paused from the CLI"
    await cli("schedule", "trigger", "--schedule-id", gh.schedule_id())
    await wait_for_job(stack, gh, count=2)
    listed = await cli("workflow", "list", "--query", f'NangoEnvironment="{gh.env}" AND NangoConnection="conn-1"')
    assert listed.count("SyncWorkflow") == 2
    await cli("schedule", "toggle", "--schedule-id", gh.schedule_id(), "--unpause", "--reason", "back")
    assert (await _status(stack, gh.key))["paused"] is False
