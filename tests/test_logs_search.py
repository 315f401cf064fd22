"""Script log lines keep the time the script wrote them; GET /logs and the dashboard search them across jobs;
GET /jobs gives each job's counts. Real stack: PostgreSQL, Temporal, the worker and its sandboxed runs."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.authoring.compile import compile_project
from orchestrator.client.api import ApiError
from orchestrator.store import jobs as jobs_repo
from tests.conftest import EXAMPLES, Stack, setup_github, wait_for_job

SLOW_ACTION = '''
import asyncio


async def run_action(nango: NangoAction, input: CreateIssue) -> GithubIssue:
    await nango.log(f"first line of {input.title}", step=1)
    await asyncio.sleep(1.0)
    await nango.log(f"second line of {input.title} 100%_done", level="warn")
    return await _create(nango, input)
'''


async def _deploy_slow_action(stack: Stack, key: str, tmp_path: Path) -> None:
    """The example integration whose create-issue action logs, sleeps a second, then logs again."""
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    action = folder / "github/actions/create_issue.py"
    action.write_text(action.read_text().replace("async def run_action(", "async def _create(") + SLOW_ACTION)
    async with stack.api(key) as api:
        await api.deploy(compile_project(folder))


async def _trigger(stack: Stack, key: str, connection_id: str, title: str) -> None:
    async with stack.api(key) as api:
        await api.request("POST", "/action/trigger", json={"action_name": "create-issue", "input": {"title": title}},
                          headers={"Connection-Id": connection_id, "Provider-Config-Key": "github"})


async def _all_pages(stack: Stack, key: str, **filters: Any) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    cursor = None
    async with stack.api(key) as api:
        while True:
            page = await api.search_logs(cursor=cursor, **filters)
            lines += page["logs"]
            cursor = page["next_cursor"]
            if cursor is None:
                return lines


async def test_lines_keep_their_time_and_search_filters_each_way(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    await _deploy_slow_action(stack, gh.key, tmp_path)
    async with stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
    marker = uuid.uuid4().hex[:8]
    before = datetime.now(UTC)
    await _trigger(stack, gh.key, gh.connection_id, f"A-{marker}")
    await _trigger(stack, gh.key, "conn-2", f"B-{marker}")

    async with stack.api(gh.key) as api:
        found = (await api.search_logs(text=f"a-{marker}"))["logs"]  # case-insensitive
        assert [e["message"] for e in found] == [f"second line of A-{marker} 100%_done", f"first line of A-{marker}"]
        second, first = found
        assert first["fields"] == {"step": 1} and first["level"] == "info" and second["level"] == "warn"
        assert {(e["script"], e["connection_id"], e["provider_config_key"], e["kind"]) for e in found} == {
            ("create-issue", gh.connection_id, "github", "action")}
        job = await api.get_job(first["job_id"])
        written = [datetime.fromisoformat(e["created_at"]) for e in (first, second)]
        gap = (written[1] - written[0]).total_seconds()
        assert 0.9 <= gap < 5, gap  # the time each was written, not the flush at the run's end
        assert before < written[0] < written[1] <= datetime.fromisoformat(job["ended_at"])
        in_job = [e for e in await api.job_logs(first["job_id"]) if marker in e["message"]]
        assert [e["created_at"] for e in in_job] == [e["created_at"] for e in found[::-1]]

        ours = await _all_pages(stack, gh.key, text=marker)
        assert len(ours) == 4
        by_conn = await _all_pages(stack, gh.key, text=marker, connection_id="conn-2")
        assert {e["connection_id"] for e in by_conn} == {"conn-2"} and len(by_conn) == 2
        assert len(await _all_pages(stack, gh.key, text=marker, integration="github")) == 4
        assert await _all_pages(stack, gh.key, text=marker, integration="gitlab") == []
        assert len(await _all_pages(stack, gh.key, text=marker, script="create-issue")) == 4
        assert await _all_pages(stack, gh.key, text=marker, script="issues") == []
        sync_lines = await _all_pages(stack, gh.key, script="issues")
        assert sync_lines and {e["kind"] for e in sync_lines} == {"sync"}
        warns = await _all_pages(stack, gh.key, text=marker, levels=["warn"])
        assert [e["level"] for e in warns] == ["warn", "warn"]
        assert len(await _all_pages(stack, gh.key, text=marker, levels=["info", "warn"])) == 4
        assert len((await api.request("GET", "/logs", params={"text": marker, "level": "error,warn"}))["logs"]) == 2
        assert await _all_pages(stack, gh.key, text="100%_") and \
            await _all_pages(stack, gh.key, text="100%x") == []  # % and _ are literal
        firsts = sorted(datetime.fromisoformat(e["created_at"]) for e in ours if e["message"].startswith("first"))
        window = await _all_pages(stack, gh.key, text=marker, since=firsts[0].isoformat(),
                                  until=(firsts[0] + timedelta(milliseconds=1)).isoformat())
        assert len(window) == 1 and window[0]["message"].startswith("first")
        assert await _all_pages(stack, gh.key, text=marker, until=before.isoformat()) == []

    # another environment sees none of it
    _, other_key = await stack.new_environment()
    async with stack.api(other_key) as api:
        assert (await api.search_logs(text=marker))["logs"] == []


async def test_pages_have_no_duplicates_or_gaps(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    jobs = await wait_for_job(stack, gh)
    marker = uuid.uuid4().hex[:8]
    base = datetime.now(UTC).replace(microsecond=0)  # after the job's start, as every line of a job is
    # 23 lines, several sharing a time (the id breaks ties), written out of time order
    lines = [jobs_repo.LogLine("info", f"{marker} line {n}", None, base + timedelta(seconds=(n * 7) % 5))
             for n in range(23)]
    async with stack.pool.acquire() as conn:
        await jobs_repo.add_logs(conn, jobs[0]["id"], lines)
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    async with stack.api(gh.key) as api:
        while True:
            page = await api.search_logs(text=marker, limit=5, cursor=cursor)
            pages.append(page["logs"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    seen = [(e["created_at"], e["id"]) for p in pages for e in p]
    assert len(set(seen)) == 23
    assert seen == sorted(seen, key=lambda k: (datetime.fromisoformat(k[0]), k[1]), reverse=True)
    assert {datetime.fromisoformat(t) for t, _ in seen} == {line.at for line in lines}


@pytest.mark.parametrize("params, names", [
    ({"from": "yesterday"}, "from"), ({"to": "2026-13-01"}, "to"), ({"level": "verbose"}, "level"),
    ({"level": "info,loud"}, "level"), ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"cursor": "not-a-cursor"}, "cursor"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"), ({"text": "x" * 1001}, "text"),
])
async def test_bad_parameters_are_400s_naming_the_parameter(stack: Stack, params: dict[str, str],
                                                            names: str) -> None:
    _, key = await stack.new_environment()
    async with stack.api(key) as api:
        with pytest.raises(ApiError) as caught:
            await api.request("GET", "/logs", params=params)
    assert caught.value.status == 400 and caught.value.code == "invalid_query_params"
    assert caught.value.message.startswith(names), caught.value.message


async def test_jobs_list_includes_each_jobs_counts(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.request("POST", "/action/trigger", json={"action_name": "create-issue", "input": {"title": "x"}},
                          headers={"Connection-Id": gh.connection_id, "Provider-Config-Key": "github"})
        listed = await api.list_jobs()
        assert {"sync", "action"} <= {j["kind"] for j in listed}
        for job in listed:
            assert job["counts"] == (await api.get_job(job["id"]))["counts"]
        sync = next(j for j in listed if j["kind"] == "sync")
        assert sync["counts"] == {"GithubIssue": {"added": 3, "updated": 0, "deleted": 0}}


async def test_dashboard_log_search_finds_a_line_and_links_its_run(stack: Stack, browser: Any) -> None:
    gh = await setup_github(stack, issues=1)
    jobs = await wait_for_job(stack, gh)
    marker = uuid.uuid4().hex[:8]
    async with stack.pool.acquire() as conn:
        await jobs_repo.add_logs(conn, jobs[0]["id"], [("error", f"Needle {marker} in the haystack", None),
                                                       ("info", f"hay {marker}", None)])
    page = await (await browser.new_context()).new_page()
    await page.goto(stack.api_url + "/dashboard/login")
    await page.fill("#secret", gh.key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboard/connections**")
    await page.click("nav.main >> text=Logs")
    await page.wait_for_url("**/dashboard/logs**")
    await page.fill("input[name=text]", f"needle {marker}")
    await page.check("input[name=level][value=error]")
    await page.click("form.log-search button[type=submit]")
    await page.wait_for_selector("#log-results tr")
    rows = page.locator("#log-results tr")
    assert await rows.count() == 1
    assert f"Needle {marker} in the haystack" in await rows.first.inner_text()
    await page.click("#log-results a.job-link")
    await page.wait_for_url(lambda u: u.endswith(f"/dashboard/job?id={jobs[0]['id']}"))
    await page.goto(stack.api_url + "/dashboard/logs?from=nonsense")
    assert "from must be an ISO 8601 date-time" in await page.locator(".flash.error").inner_text()
