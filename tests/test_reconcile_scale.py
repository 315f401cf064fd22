"""A redeploy that changes a sync's interval for hundreds of connections, through the real stack.

Every schedule ends with the new interval (read back from Temporal), paused ones stay paused, an interval
edited in the Temporal UI is kept, and schedules Temporal refuses are named while all the others are applied.
Schedules whose PostgreSQL row says what we last wrote are re-timed from the listing, without a describe.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, DescribeScheduleInput, Interceptor, OutboundInterceptor, UpdateScheduleInput

from orchestrator.authoring.compile import compile_project
from orchestrator.client.api import ApiError
from orchestrator.control import deploy as deploy_control
from orchestrator.control.reconcile import ReconcileError, reconcile_integration
from orchestrator.platform import open_platform
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import schedule_intervals
from orchestrator.temporal import names, schedules
from orchestrator.temporal.schedules import ScheduleView
from orchestrator.temporal.types import SyncInput
from tests.conftest import EXAMPLES, Stack
from tests.test_variants_intervals import ui_retime

CONNECTIONS = 240


def _folder(tmp_path: Path, runs: str) -> Path:
    """The example integration, its sync not started by itself (no run floods the shared worker)."""
    folder = tmp_path / f"ints-{runs.replace(' ', '')}"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text().replace(
        "runs: every 5 minutes", f"runs: {runs}\n        auto_start: false")
    (folder / "nango.yaml").write_text(text)
    return folder


async def _add_connections(stack: Stack, env: str, ids: list[str]) -> None:
    """Connections as rows (no schedule work of their own): the reconciler is what we watch."""
    async with stack.pool.acquire() as conn:
        env_id, integ = await conn.fetchrow(
            "SELECT e.id, i.id FROM environments e JOIN integrations i ON i.environment_id = e.id"
            " WHERE e.name = $1 AND i.unique_key = 'github'", env)
        await conn.executemany(
            "INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
            " VALUES ($1, $2, $3, '\\x00')", [(env_id, integ, c) for c in ids])


async def _views(stack: Stack, sids: list[str]) -> dict[str, ScheduleView | None]:
    gate = asyncio.Semaphore(16)

    async def one(sid: str) -> ScheduleView | None:
        async with gate:
            return await schedules.describe(stack.client, sid)
    return dict(zip(sids, await asyncio.gather(*(one(s) for s in sids)), strict=True))


async def _reconcile(stack: Stack, env: str) -> None:
    async with stack.platform() as platform:
        async with platform.pool.acquire() as conn:
            env_id = await conn.fetchval("SELECT id FROM environments WHERE name = $1", env)
            integration = await integrations_repo.get(conn, env_id, "github")
        assert integration is not None
        await reconcile_integration(platform, integration)


async def test_redeploy_retimes_hundreds_of_schedules(stack: Stack, tmp_path: Path) -> None:
    env, key = await stack.new_environment()
    ids = [f"c-{i:04d}" for i in range(CONNECTIONS)]
    sids = [names.sync_schedule_id(env, "github", c, "issues") for c in ids]
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 1h")))
        await _add_connections(stack, env, ids)
        await _reconcile(stack, env)  # as the maintenance loop (or the next connection's creation) does
        before = await _views(stack, sids)
        assert all(v is not None and v.interval_s == 3600 and v.paused for v in before.values())

        # a tenth resumed by the user; one re-timed in the Temporal UI
        resumed = set(sids[::10])
        await asyncio.gather(*(schedules.unpause(stack.client, sid, "resumed") for sid in resumed))
        ui_edited = sids[1]
        await ui_retime(stack, ui_edited, timedelta(minutes=45))

        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 2h")))
        after = await _views(stack, sids)
        wrong = {sid: v.interval_s if v else None for sid, v in after.items()
                 if sid != ui_edited and (v is None or v.interval_s != 7200)}
        assert not wrong, f"{len(wrong)} schedules not re-timed: {sorted(wrong.items())[:5]}"
        assert after[ui_edited] is not None and after[ui_edited].interval_s == 45 * 60
        flipped = [sid for sid, v in after.items() if v is None or v.paused != (sid not in resumed)]
        assert not flipped, f"pause state changed by the redeploy: {flipped[:5]}"


async def test_refused_schedules_are_named_and_the_rest_applied(stack: Stack, tmp_path: Path) -> None:
    env, key = await stack.new_environment()
    ids = [f"ok-{i:03d}" for i in range(60)]
    sids = [names.sync_schedule_id(env, "github", c, "issues") for c in ids]
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 1h")))
        await _add_connections(stack, env, ids)
        await _reconcile(stack, env)
        # two connections whose schedule id is longer than Temporal accepts (its ID length limit): every call
        # about them is refused, whatever the reconciler does
        bad = ["x" * 1100 + "-a", "x" * 1100 + "-b"]
        await _add_connections(stack, env, bad)
        with pytest.raises(ApiError) as caught:
            await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 2h")))
        err = caught.value
        assert err.code == ReconcileError.code, err
        assert "2 schedule(s)" in err.message and bad[0] in err.message and bad[1] in err.message, err.message
        after = await _views(stack, sids)
        assert all(v is not None and v.interval_s == 7200 and v.paused for v in after.values())
        # the deploy itself was stored: its history has the new version
        assert len(await api.deploy_history("github")) == 2


async def test_reconciling_one_connection_touches_only_its_schedules(stack: Stack, tmp_path: Path) -> None:
    """What creating a connection does: its schedule is created by id; nothing else is listed or deleted."""
    env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 1h")))
    await _add_connections(stack, env, ["first", "second"])
    async with stack.platform() as platform:
        async with platform.pool.acquire() as conn:
            env_id = await conn.fetchval("SELECT id FROM environments WHERE name = $1", env)
            integration = await integrations_repo.get(conn, env_id, "github")
            second = await conn.fetchval("SELECT id FROM connections WHERE environment_id = $1"
                                         " AND connection_id = 'second'", env_id)
        assert integration is not None
        first_sid, second_sid = (names.sync_schedule_id(env, "github", c, "issues") for c in ("first", "second"))
        report = await reconcile_integration(platform, integration, only_connections=[second])
        assert report.created == [second_sid] and not report.deleted
        assert await schedules.describe(stack.client, first_sid) is None
        # again: the schedule exists and already has the deployed interval, so nothing changes
        again = await reconcile_integration(platform, integration, only_connections=[second])
        assert not (again.created or again.retimed or again.deleted)
        # the full reconcile catches up with the other connection
        full = await reconcile_integration(platform, integration)
        assert full.created == [first_sid]


class _CountDescribes(Interceptor):
    """Counts the client calls that describe a schedule: `describe` and `handle.update()` (describe, then update)."""

    def __init__(self) -> None:
        self.count = 0

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        counter = self

        class Counting(OutboundInterceptor):
            async def describe_schedule(self, input: DescribeScheduleInput) -> Any:
                counter.count += 1
                return await super().describe_schedule(input)

            async def update_schedule(self, input: UpdateScheduleInput) -> None:
                counter.count += 1
                await super().update_schedule(input)
        return Counting(next)


async def _deploy_counting_describes(stack: Stack, env: str, folder: Path) -> int:
    """Deploy the folder to the environment; how many schedule describes the deploy made."""
    counter = _CountDescribes()
    async with open_platform(stack.settings, temporal=Client(**{**stack.client.config(),
                                                                 "interceptors": [counter]})) as platform:
        async with platform.pool.acquire() as conn:
            environment = await environments_repo.by_name(conn, env)
        assert environment is not None
        bundles = await asyncio.to_thread(compile_project, folder)
        await deploy_control.deploy(platform, environment,
                                    [deploy_control.UploadedBundle.parse(b.data) for b in bundles])
    return counter.count


async def test_redeploy_retimes_from_the_listing_without_describing(stack: Stack, tmp_path: Path) -> None:
    """Running schedules are re-timed from the listing and their PostgreSQL row; a paused one, one edited in the
    Temporal UI and one from before the rows existed are described (as before) and keep what they had."""
    env, key = await stack.new_environment()
    ids = [f"r-{i:03d}" for i in range(40)]
    sids = [names.sync_schedule_id(env, "github", c, "issues") for c in ids]
    async with stack.api(key) as api:  # a 30-day interval: nothing fires while the test runs
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 30d")))
    await _add_connections(stack, env, ids)
    await _reconcile(stack, env)
    held, ui_edited, legacy = sids[0], sids[1], sids[2]
    await asyncio.gather(*(schedules.unpause(stack.client, sid, "started by the user", pool=stack.pool)
                           for sid in sids[1:]))
    await schedules.pause(stack.client, held, "on hold by ops")
    await ui_retime(stack, ui_edited, timedelta(days=45))
    async with stack.pool.acquire() as conn:  # as a schedule created before the rows existed
        await schedule_intervals.delete(conn, [legacy])
    prefix = names.schedule_prefix(env, "github")
    for _ in range(200):  # the listing shows changes a moment after Temporal made them
        shown: dict[str, schedules.Listed] = {}
        async for page in schedules.list_pages(stack.client, prefix):
            shown.update(page)
        if shown[held].paused and not any(shown[s].paused for s in sids[1:]) and \
                shown[ui_edited].interval_s == 45 * 86400:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the listing never showed the pause, the resumes and the UI edit")

    describes = await _deploy_counting_describes(stack, env, _folder(tmp_path, "every 31d"))
    assert describes == 3  # the paused, the UI-edited and the row-less one; the 37 others from the listing

    after = await _views(stack, sids)
    assert all(v is not None for v in after.values())
    wrong = [sid for sid, v in after.items() if sid != ui_edited and v and v.interval_s != 31 * 86400]
    assert not wrong and after[ui_edited] and after[ui_edited].interval_s == 45 * 86400
    assert after[held] and after[held].paused and after[held].note == "on hold by ops"
    running = [v for sid, v in after.items() if sid != held]
    assert all(v and not v.paused and v.note == "started by the user" for v in running)
    async with stack.pool.acquire() as conn:
        rows = await schedule_intervals.for_ids(conn, sids)
    # the row-less schedule got its row from the describe; the UI-edited one keeps what we wrote before
    assert rows[legacy] == schedule_intervals.Written(31 * 86400, "default")
    assert rows[ui_edited] == schedule_intervals.Written(30 * 86400, "default")
    assert all(rows[sid].interval_s == 31 * 86400 for sid in sids if sid != ui_edited)


async def test_a_schedule_on_its_interval_s_boundary_is_re_timed_from_the_listing(stack: Stack, tmp_path: Path
                                                                                 ) -> None:
    """Temporal leaves a zero offset unset (a schedule created on its interval's boundary, one in `every`):
    the listing's re-timing keeps it on the boundary, and the other schedule keeps its own phase."""
    env, key = await stack.new_environment()
    sids = [names.sync_schedule_id(env, "github", c, "issues") for c in ("b-0", "b-1")]
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 30d")))
    await _add_connections(stack, env, ["b-0", "b-1"])
    await _reconcile(stack, env)
    await asyncio.gather(*(schedules.unpause(stack.client, sid, "started", pool=stack.pool) for sid in sids))
    boundary, other = sids
    await ui_retime(stack, boundary, timedelta(days=30))  # the same interval, its offset gone
    prefix = names.schedule_prefix(env, "github")
    for _ in range(200):  # the listing shows changes a moment after Temporal made them
        shown: dict[str, schedules.Listed] = {}
        async for page in schedules.list_pages(stack.client, prefix):
            shown.update(page)
        if not any(shown[s].paused for s in sids) and shown[boundary].offset == timedelta(0):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the listing never showed the resumes and the zero offset")
    other_offset = shown[other].offset
    assert other_offset > timedelta(0)

    describes = await _deploy_counting_describes(stack, env, _folder(tmp_path, "every 31d"))
    assert describes == 0  # both from the listing
    after = await _views(stack, sids)
    every = 31 * 86400
    assert all(v is not None and v.interval_s == every and not v.paused for v in after.values()), after
    assert after[boundary] and after[boundary].next_run and after[boundary].next_run.timestamp() % every == 0
    assert after[other] and after[other].next_run
    assert after[other].next_run.timestamp() % every == other_offset.total_seconds()


async def test_a_pause_sent_by_the_platform_survives_a_listing_that_still_shows_it_running(
        stack: Stack, tmp_path: Path) -> None:
    """The listing lags (a minute after a mass change): a schedule paused through the platform just before a
    deploy may still be listed running. Re-timing it from that listing must not undo the pause."""
    env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, _folder(tmp_path, "every 30d")))
    await _add_connections(stack, env, ["p-1"])
    await _reconcile(stack, env)
    sid = names.sync_schedule_id(env, "github", "p-1", "issues")
    await schedules.unpause(stack.client, sid, "started by the user", pool=stack.pool)
    async with stack.pool.acquire() as conn:
        written = (await schedule_intervals.for_ids(conn, [sid]))[sid]
        env_id = await conn.fetchval("SELECT id FROM environments WHERE name = $1", env)
    stale = schedules.Listed(interval_s=30 * 86400, paused=False, note="started by the user")  # read before
    await schedules.pause(stack.client, sid, "on hold by ops", pool=stack.pool)  # the pause, sent after it

    sync = SyncInput(env_id, env, "github", "p-1", "issues", "base")
    queue = names.queue(stack.settings.task_queue_prefix, names.SYNC_QUEUE)
    assert await schedules.retime_listed(stack.client, sync, timedelta(days=31), task_queue=queue, pool=stack.pool,
                                         listed=stale, written=written)
    view = await schedules.describe(stack.client, sid)
    assert view is not None and view.interval_s == 31 * 86400  # re-timed (described first)
    assert view.paused and view.note == "on hold by ops"  # and still paused as the platform left it

    await schedules.unpause(stack.client, sid, "back on", pool=stack.pool)  # resumed: blind re-timing again
    async with stack.pool.acquire() as conn:
        assert not await schedule_intervals.is_held(conn, sid)
