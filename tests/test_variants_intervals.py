"""Variants and which interval wins, through the real stack (DESIGN.md section 3, step 2)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from temporalio.client import (
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from orchestrator.authoring.compile import compile_project
from orchestrator.temporal import names, schedules
from tests.conftest import EXAMPLES, Stack, eventually, setup_github, wait_for_job

VARIANT_SYNC = '''
async def fetch_data(nango):
    await nango.batch_save([{"id": "1", "number": 1, "title": f"variant={nango.variant}", "body": None,
                             "state": "open", "url": "u", "author": None, "labels": [], "created_at": "c",
                             "updated_at": "u", "closed_at": None}], "GithubIssue")


async def on_webhook(nango, payload):
    pass
'''


def _folder(tmp_path: Path, runs: str = "every 5 minutes", sync: str | None = None) -> Path:
    folder = tmp_path / f"ints-{runs.replace(' ', '')}"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text().replace("runs: every 5 minutes", f"runs: {runs}")
    (folder / "nango.yaml").write_text(text)
    if sync:
        (folder / "github/syncs/issues.py").write_text(sync)
    return folder


async def test_variant_has_its_own_schedule_and_records(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, folder=_folder(tmp_path, sync=VARIANT_SYNC))
    await wait_for_job(stack, gh)
    body = {"provider_config_key": "github", "connection_id": "conn-1"}
    async with stack.api(gh.key) as api:
        created = await api.request("POST", "/sync/issues/variant/eu", json=body)
        assert created["variant"] == "eu"
        sid = names.sync_schedule_id(gh.env, "github", "conn-1", "issues", "eu")
        assert sid.endswith(":issues:eu") and await schedules.describe(stack.client, sid) is not None

        async def variant_records() -> dict:
            page = await api.list_records("github", "conn-1", "GithubIssue", variant="eu")
            assert [r["title"] for r in page["records"]] == ["variant=eu"], page
            return page
        await eventually(variant_records, timeout=30)
        base = await api.list_records("github", "conn-1", "GithubIssue")
        assert [r["title"] for r in base["records"]] == ["variant=base"]

        st = await api.request("GET", "/sync/status", params={
            "syncs": "issues::eu", "provider_config_key": "github", "connection_id": "conn-1"})
        assert st["syncs"][0]["variant"] == "eu" and st["syncs"][0]["recordCount"] == {"GithubIssue": 1}

        # a redeploy keeps the variant's schedule
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path / "again", sync=VARIANT_SYNC)))
        assert await schedules.describe(stack.client, sid) is not None

        assert await api.request("DELETE", "/sync/issues/variant/eu", json=body) == {"success": True}
        assert await schedules.describe(stack.client, sid) is None
        gone = await api.list_records("github", "conn-1", "GithubIssue", variant="eu")
        assert gone["records"] == []
        err = await api.request("DELETE", "/sync/issues/variant/eu", json=body, ok=(404,))
        assert "no variant 'eu'" in err["error"]["message"]
        err = await api.request("POST", "/sync/issues/variant/base", json=body, ok=(400,))
        assert "not 'base'" in err["error"]["message"]


async def ui_set_spec(stack: Stack, sid: str, spec: ScheduleSpec) -> None:
    """Change when a schedule runs as the Temporal UI does: the spec replaced, nothing else touched."""
    def edit(inp: ScheduleUpdateInput) -> ScheduleUpdate:
        sched = inp.description.schedule
        sched.spec = spec
        return ScheduleUpdate(schedule=sched)
    await stack.client.get_schedule_handle(sid).update(edit)


async def ui_retime(stack: Stack, sid: str, every: timedelta) -> None:
    await ui_set_spec(stack, sid, ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]))


async def _interval(stack: Stack, sid: str) -> int | None:
    view = await schedules.describe(stack.client, sid)
    assert view is not None
    return view.interval_s


async def test_which_interval_wins(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=1, folder=_folder(tmp_path, "every 5 minutes"))
    other = "conn-2"
    async with stack.api(gh.key) as api:
        await api.create_connection("github", other, {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
        third = "conn-3"
        await api.create_connection("github", third, {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
        sid1 = gh.schedule_id()
        sid2 = names.sync_schedule_id(gh.env, "github", other, "issues")
        sid3 = names.sync_schedule_id(gh.env, "github", third, "issues")
        # conn-2: a per-connection frequency through the API
        await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": other, "frequency": "every 2h"})

        # conn-3: an interval edited in the Temporal UI (spec replaced through the client, as the UI does)
        await ui_retime(stack, sid3, timedelta(minutes=45))

        # a deploy that changes `runs` re-times only the schedules that follow the default
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 10 minutes")))
        assert await _interval(stack, sid1) == 600
        assert await _interval(stack, sid2) == 7200
        assert await _interval(stack, sid3) == 45 * 60
        st = await api.request("GET", "/sync/status", params={"syncs": "issues", "provider_config_key": "github",
                                                             "connection_id": third})
        assert st["syncs"][0]["frequency"] == "every 45min" and st["syncs"][0]["frequency_source"] == "ui"

        # frequency: null resets the override to the deployed default
        await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": other, "frequency": None})
        assert await _interval(stack, sid2) == 600


async def test_days_of_the_week_or_a_cron_string_set_in_the_temporal_ui(stack: Stack, tmp_path: Path) -> None:
    """The UI's other editors (days of the week, a cron string) are said as a cron line, not as the deployed
    interval; a redeploy keeps them; a frequency set through the API replaces them with its interval."""
    gh = await setup_github(stack, issues=1, folder=_folder(tmp_path, "every 5 minutes"))
    sid = gh.schedule_id()
    await ui_set_spec(stack, sid, ScheduleSpec(calendars=[ScheduleCalendarSpec(
        minute=[ScheduleRange(30)], hour=[ScheduleRange(9)], day_of_week=[ScheduleRange(1, 5)])],
        time_zone_name="Europe/Paris"))
    query = {"syncs": "issues", "provider_config_key": "github", "connection_id": "conn-1"}
    async with stack.api(gh.key) as api:
        st = (await api.request("GET", "/sync/status", params=query))["syncs"][0]
        assert (st["frequency"], st["frequency_source"]) == ("cron 30 9 * * 1-5 in Europe/Paris", "ui"), st
        view = await schedules.describe(stack.client, sid)
        assert view is not None and view.next_run is not None
        at = view.next_run.astimezone(ZoneInfo("Europe/Paris"))
        assert (at.hour, at.minute, at.isoweekday() <= 5) == (9, 30, True), at

        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 10 minutes")))
        view = await schedules.describe(stack.client, sid)
        assert view is not None and view.interval_s is None and view.frequency == "cron 30 9 * * 1-5 in Europe/Paris"

        await ui_set_spec(stack, sid, ScheduleSpec(cron_expressions=["0 */6 * * *"]))
        st = (await api.request("GET", "/sync/status", params=query))["syncs"][0]
        assert (st["frequency"], st["frequency_source"]) == ("cron 0 */6 * * *", "ui"), st

        await api.request("PUT", "/sync/update-connection-frequency", json={
            "sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1", "frequency": "every 2h"})
        st = (await api.request("GET", "/sync/status", params=query))["syncs"][0]
        assert (st["frequency"], st["frequency_source"]) == ("every 2h", "override"), st
        assert await _interval(stack, sid) == 7200


async def test_deleting_a_connection_deletes_its_variants_schedules(stack: Stack, tmp_path: Path) -> None:
    """Not only the base schedule of each sync: a variant's schedule left behind would fire for a connection
    that no longer exists until a full reconcile, and forever with the maintenance loop off."""
    gh = await setup_github(stack, folder=_folder(tmp_path, sync=VARIANT_SYNC))
    body = {"provider_config_key": "github", "connection_id": "conn-1"}
    async with stack.api(gh.key) as api:
        for variant in ("eu", "us"):
            await api.request("POST", f"/sync/issues/variant/{variant}", json=body)
        sids = [names.sync_schedule_id(gh.env, "github", "conn-1", "issues", v) for v in ("base", "eu", "us")]
        assert all([await schedules.describe(stack.client, sid) is not None for sid in sids])
        await api.request("DELETE", "/connections/conn-1", params={"provider_config_key": "github"})
    assert [await schedules.describe(stack.client, sid) for sid in sids] == [None, None, None]
