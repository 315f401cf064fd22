"""What the API says, said one way (issue 21): counts name every model of a sync, every timestamp has one form,
a frequency reads the same wherever it is shown, and a trigger says what became of it. Through the real stack."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.conftest import Stack, allow_egress, eventually, serve_post, setup_github, wait_for_job
from tests.test_api_notifications import idle
from tests.test_dashboard import _login

ZERO = {"added": 0, "updated": 0, "deleted": 0}
ONE_FORM = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
LOOKS_LIKE_A_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _timestamps(value: Any, where: str = "") -> list[tuple[str, str]]:
    """Every string in an answer that looks like a date-time, with where it is."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _timestamps(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _timestamps(v, f"{where}[{i}]")]
    return [(where, value)] if isinstance(value, str) and LOOKS_LIKE_A_TIME.match(value) else []


async def test_a_run_that_changes_nothing_reports_every_model_at_zero(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    await idle(stack, gh.schedule_id())  # the first run is done notifying (no webhook URL yet)
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        return web.Response(text="ok")

    async with serve_post("/hook", hook) as url, allow_egress(stack, url), stack.api(gh.key) as api:
        await api.update_environment(webhook_url=url, webhook_secret="s", notify_on_empty=True)
        triggered = await api.trigger_sync("github", ["issues"], "conn-1")  # nothing changed upstream
        assert [(t["sync"], t["outcome"]) for t in triggered] == [("issues", "started")]
        jobs = await wait_for_job(stack, gh, count=2)
        status = await api.request("GET", "/sync/status", params={
            "syncs": "issues", "provider_config_key": "github", "connection_id": "conn-1"})
        assert status["syncs"][0]["latestResult"] == {"GithubIssue": ZERO}
        listed = await api.request("GET", "/jobs", params={"kind": "sync", "connection_id": "conn-1"})
        assert [j["counts"] for j in listed["jobs"]] == [
            {"GithubIssue": ZERO}, {"GithubIssue": {"added": 2, "updated": 0, "deleted": 0}}]
        assert (await api.request("GET", f"/jobs/{jobs[0]['id']}"))["counts"] == {"GithubIssue": ZERO}

        async def notified() -> None:
            assert [p["responseResults"] for p in received] == [ZERO], received
        await eventually(notified, timeout=30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # the dashboard's run page
        assert (await _login(http, stack.api_url, gh.key)).status == 302
        page = await (await http.get(f"{stack.api_url}/dashboard/job?id={jobs[0]['id']}")).text()
    assert "No records changed." not in page and re.search(r"<td>GithubIssue</td>(\s*<td>0</td>){3}", page), page


async def test_every_timestamp_the_api_answers_has_one_form(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "OAUTH2", "access_token": "t",
                                                         "expires_at": "2031-05-06T07:08:09.5+02:00"})
        job_id = (await wait_for_job(stack, gh))[0]["id"]
        answers = {
            "sync status": await api.request("GET", "/sync/status", params={
                "syncs": "*", "provider_config_key": "github"}),
            "jobs": await api.request("GET", "/jobs"),
            "job": await api.request("GET", f"/jobs/{job_id}"),
            "job logs": await api.request("GET", f"/jobs/{job_id}/logs"),
            "logs": await api.request("GET", "/logs"),
            "connections": await api.request("GET", "/connections"),
            "connection": await api.request("GET", "/connections/conn-1", params={"provider_config_key": "github"}),
            "expiring": await api.request("GET", "/connections/conn-2", params={"provider_config_key": "github"}),
            "integrations": await api.request("GET", "/integrations"),
            "integration": await api.request("GET", "/integrations/github"),
            "functions": await api.request("GET", "/integrations/github/functions"),
            "scripts config": await api.request("GET", "/scripts/config"),
            "deploy history": await api.request("GET", "/deploy/history"),
            "connect session": await api.request("POST", "/connect/sessions", json={"end_user": {"id": "u1"}}),
        }
    found = [(name + where, value) for name, answer in answers.items() for where, value in _timestamps(answer)]
    wrong = [(where, value) for where, value in found if not ONE_FORM.fullmatch(value)]
    assert not wrong, wrong
    seen = {where.split(".")[-1] for where, _ in found}
    assert {"finishedAt", "nextScheduledSyncAt", "started_at", "ended_at", "created_at", "created", "updated_at",
            "last_fetched_at", "expires_at", "deployed_at", "last_deployed"} <= seen, seen
    assert answers["expiring"]["credentials"]["expires_at"] == "2031-05-06T05:08:09.500Z"


async def test_a_frequency_reads_the_same_wherever_it_is_shown(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    body = {"sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1"}
    async with stack.api(gh.key) as api:
        async def shown() -> str:
            status = await api.request("GET", "/sync/status", params={
                "syncs": "issues", "provider_config_key": "github", "connection_id": "conn-1"})
            return str(status["syncs"][0]["frequency"])
        assert await shown() == "every 5 minutes"  # as nango.yaml says it, as Nango's status does
        put = "PUT", "/sync/update-connection-frequency"
        assert await api.request(*put, json={**body, "frequency": "every 2 hours"}) == {"frequency": "every 2 hours"}
        assert await shown() == "every 2 hours"
        reset = await api.request(*put, json={**body, "frequency": None})
        assert reset == {"frequency": await shown()} == {"frequency": "every 5 minutes"}


async def test_each_trigger_says_what_became_of_it(stack: Stack) -> None:
    """Plain, then `opts.reset`, then `sync_mode: full_refresh`, back to back: two runs, the first cancelled by
    the full resync; the answers say started, queued after the running run, coalesced into the queued run."""
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    base = {"syncs": ["issues"], "provider_config_key": "github", "connection_id": "conn-1"}
    # the next run's first page of issues takes a while: it is still running when the full resyncs arrive
    stack.demo.fail_next(1, status=429, retry_after=1, delay=4, path_prefix=f"/repos/{gh.repo}/issues")
    async with stack.api(gh.key) as api:
        answers = [await api.request("POST", "/sync/trigger", json={**base, **extra})
                   for extra in ({}, {"opts": {"reset": True}}, {"sync_mode": "full_refresh"})]
        outcomes = [a["triggered"] for a in answers]
        assert [[(t["connection_id"], t["sync"], t["variant"]) for t in o] for o in outcomes] == [
            [("conn-1", "issues", "base")]] * 3
        assert [o[0]["outcome"] for o in outcomes] == ["started", "queued", "coalesced"], outcomes
        assert "cancelled" in outcomes[1][0]["detail"] and "full resync" in outcomes[2][0]["detail"]
        jobs = await wait_for_job(stack, gh, count=3)
        assert [j["status"] for j in jobs[:2]] == ["success", "cancelled"], jobs
        listed = await api.request("GET", "/jobs", params={"kind": "sync", "limit": "2"})
        assert "cancelled by a full resync" in (listed["jobs"][1]["error"] or ""), listed
        unknown = await api.request("POST", "/sync/trigger", json={**base, "connection_id": "nope"}, ok=(404,))
        assert "no connection 'nope'" in unknown["error"]["message"]


async def test_a_trigger_for_every_connection_answers_for_each(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
        answer = await api.request("POST", "/sync/trigger", json={"syncs": ["issues"], "provider_config_key": "github"})
    assert sorted(t["connection_id"] for t in answer["triggered"]) == ["conn-1", "conn-2"]
    assert {t["outcome"] for t in answer["triggered"]} <= {"started", "queued", "coalesced"}, answer
