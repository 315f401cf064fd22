"""The dashboard against the live stack: login, CSRF, escaping, and every page driven in headless Chromium."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from orchestrator.api.app import create_app
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.temporal.names import sync_schedule_id
from tests.conftest import GithubSetup, Stack, eventually, setup_github, wait_for_job

HOSTILE = "<script>alert('x')</script>"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def _login(http: aiohttp.ClientSession, base: str, secret: str) -> aiohttp.ClientResponse:
    return await http.post(f"{base}/dashboard/login", data={"secret": secret, "next": "/dashboard/connections"},
                           allow_redirects=False)


async def _ids(stack: Stack, gh: GithubSetup) -> tuple[int, int]:
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT c.id AS pk, c.environment_id AS env FROM connections c JOIN environments e"
            " ON e.id = c.environment_id WHERE e.name = $1 AND c.connection_id = $2", gh.env, gh.connection_id)
    return row["pk"], row["env"]


async def _paused(stack: Stack, gh: GithubSetup) -> bool:
    desc = await stack.client.get_schedule_handle(gh.schedule_id()).describe()
    return desc.schedule.state.paused


# ---- fast checks over plain HTTP -----------------------------------------------------------------

async def test_login_is_required_and_controls_need_the_csrf_token(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    other = await setup_github(stack, issues=1)
    jobs = await wait_for_job(stack, gh)
    base = stack.api_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await http.get(f"{base}/", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/dashboard"
        for path in ("/dashboard/connections", "/dashboard/integrations", f"/dashboard/job?id={jobs[0]['id']}",
                     "/dashboard/webhooks"):
            resp = await http.get(base + path, allow_redirects=False)
            assert resp.status == 302 and resp.headers["Location"].startswith("/dashboard/login"), path
        resp = await http.get(f"{base}/dashboard/job/logs.json?id={jobs[0]['id']}")
        assert resp.status == 401
        # A forged cookie is no session.
        http.cookie_jar.update_cookies({"nango_dashboard": "eyJlIjoxfQ.forged"})
        resp = await http.get(f"{base}/dashboard/connections", allow_redirects=False)
        assert resp.status == 302
        resp = await _login(http, base, "not-a-key")
        assert resp.status == 401 and "not valid" in await resp.text()

        resp = await _login(http, base, gh.key)
        assert resp.status == 302 and resp.headers["Location"] == "/dashboard/connections"
        page = await (await http.get(f"{base}/dashboard/connections")).text()
        assert gh.connection_id in page and "issues" in page
        assert resp.headers.get("Set-Cookie", "").lower().count("httponly") == 1
        token = _csrf(page)
        form = {"op": "pause", "integration": "github", "connection": gh.connection_id, "sync": "issues",
                "next": "/dashboard/connections"}
        for bad in ({}, {"csrf": "wrong-token-wrong-token"}):
            resp = await http.post(f"{base}/dashboard/control", data={**form, **bad}, allow_redirects=False)
            assert resp.status == 403, bad
        assert not await _paused(stack, gh)
        resp = await http.post(f"{base}/dashboard/control", data={**form, "csrf": token}, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/dashboard/connections"
        assert await _paused(stack, gh)
        page = await (await http.get(f"{base}/dashboard/connections")).text()
        assert "Paused issues." in page and "b-paused" in page
        resp = await http.post(f"{base}/dashboard/control", data={**form, "op": "frequency", "csrf": token,
                                                                   "frequency": "every banana"})
        assert 'class="flash error"' in await resp.text()
        # An open redirect through `next` is refused.
        resp = await http.post(f"{base}/dashboard/control", data={**form, "op": "resume", "csrf": token,
                                                                   "next": "//evil.example/x"}, allow_redirects=False)
        assert resp.headers["Location"] == "/dashboard" and not await _paused(stack, gh)
        for op, flash in (("cancel", "Nothing was running."), ("full", "Full resync of issues started.")):
            resp = await http.post(f"{base}/dashboard/control", data={**form, "op": op, "csrf": token})
            assert flash in await resp.text(), op
        await wait_for_job(stack, gh, count=2)
        # Another environment's run is not visible from this session.
        other_jobs = await wait_for_job(stack, other)
        resp = await http.get(f"{base}/dashboard/job?id={other_jobs[0]['id']}")
        assert resp.status == 404
        resp = await http.get(f"{base}/dashboard/job/logs.json?id={other_jobs[0]['id']}")
        assert resp.status == 404
        # Security headers on every page.
        resp = await http.get(f"{base}/dashboard/integrations")
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        # Logging out ends the session.
        resp = await http.post(f"{base}/dashboard/logout", data={"csrf": token}, allow_redirects=False)
        assert resp.status == 302
        resp = await http.get(f"{base}/dashboard/connections", allow_redirects=False)
        assert resp.status == 302


async def test_hostile_record_values_and_log_lines_are_escaped(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    jobs = await wait_for_job(stack, gh)
    pk, env_id = await _ids(stack, gh)
    async with stack.pool.acquire() as conn:
        await records_repo.batch_save(conn, records_repo.Scope(env_id, pk, "GithubIssue"), [
            {"id": HOSTILE, "title": '"><img src=x onerror=alert(1)>', "body": HOSTILE}])
        await jobs_repo.add_logs(conn, jobs[0]["id"], [("error", HOSTILE, {"k": HOSTILE})])
        await conn.execute("UPDATE jobs SET status = 'failed', error = $2, error_details = $3 WHERE id = $1",
                           jobs[0]["id"], f"ValueError: {HOSTILE}",
                           f'Traceback (most recent call last):\n  File "issues.py", line 3\nValueError: {HOSTILE}')
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, stack.api_url, gh.key)
        pages = [f"/dashboard/records?integration=github&connection={gh.connection_id}&model=GithubIssue",
                 f"/dashboard/job?id={jobs[0]['id']}", f"/dashboard/job?id={jobs[0]['id']}&q={HOSTILE}",
                 f"/dashboard/sync?integration=github&connection={gh.connection_id}&sync=issues",
                 f"/dashboard/connection?integration=github&connection={gh.connection_id}"]
        for path in pages:
            resp = await http.get(stack.api_url + path)
            assert resp.status == 200, path
            html = await resp.text()
            assert "<script>alert" not in html and "<img src=x" not in html, path
            assert "&lt;script&gt;alert(" in html, path
        sync_page = await (await http.get(stack.api_url + pages[3])).text()
        assert "Traceback (most recent call last)" in sync_page and 'class="bar s-failed"' in sync_page
        data = await (await http.get(f"{stack.api_url}/dashboard/job/logs.json?id={jobs[0]['id']}&level=error"))\
            .json()
        assert [e["message"] for e in data["logs"]] == [HOSTILE]


async def test_dashboard_password_picks_an_environment_and_links_the_temporal_ui(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    await wait_for_job(stack, gh)
    settings = stack.settings.model_copy(update={"dashboard_password": SecretStr("open sesame"),
                                                 "temporal_ui_url": "http://temporal-ui.example:8233/"})
    async with TestClient(TestServer(create_app(settings, temporal=stack.client))) as client:
        resp = await client.post("/dashboard/login", data={"secret": "open sesame"}, allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/dashboard/environments"
        resp = await client.get("/dashboard/connections", allow_redirects=False)
        assert resp.headers["Location"] == "/dashboard/environments"
        page = await (await client.get(f"/dashboard/environments?q={gh.env}")).text()
        env_id = re.search(r'name="id" value="(\d+)"', page)
        assert env_id and gh.env in page
        resp = await client.post("/dashboard/environments", data={"id": env_id.group(1), "csrf": _csrf(page)},
                                 allow_redirects=False)
        assert resp.status == 302
        page = await (await client.get(f"/dashboard/connection?integration=github&connection={gh.connection_id}"))\
            .text()
        sid = sync_schedule_id(gh.env, "github", gh.connection_id, "issues").replace(":", "%3A")
        assert f'href="http://temporal-ui.example:8233/namespaces/default/schedules/{sid}"' in page
        assert "<svg" in page and 'class="bar s-success"' in page


async def test_connections_page_stays_fast_with_ten_thousand_connections(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    await wait_for_job(stack, gh)
    pk, _ = await _ids(stack, gh)
    async with stack.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO connections (environment_id, integration_id, connection_id, credentials)"
            " SELECT environment_id, integration_id, 'bulk-' || lpad(g::text, 5, '0'), credentials"
            " FROM connections, generate_series(1, 10000) g WHERE id = $1", pk)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _login(http, stack.api_url, gh.key)
            loop = asyncio.get_running_loop()
            for query, expect in (("page=300", "bulk-07476"), ("q=bulk-0999", "bulk-09990"),
                                  ("q=conn-", gh.connection_id)):
                started = loop.time()
                resp = await http.get(f"{stack.api_url}/dashboard/connections?{query}")
                elapsed = loop.time() - started
                html = await resp.text()
                assert resp.status == 200 and expect in html, query
                assert elapsed < 3, f"{query} took {elapsed:.2f}s"
            assert "10,001 connections" in await (await http.get(f"{stack.api_url}/dashboard/connections")).text()
    finally:
        async with stack.pool.acquire() as conn:
            await conn.execute("DELETE FROM connections WHERE integration_id = (SELECT integration_id FROM connections"
                               " WHERE id = $1) AND connection_id LIKE 'bulk-%'", pk)


async def test_endpoints_page_renders_the_reference(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, stack.api_url, gh.key)
        page = await (await http.get(f"{stack.api_url}/dashboard/integrations")).text()
        assert 'href="/dashboard/endpoints?integration=github"' in page
        resp = await http.get(f"{stack.api_url}/dashboard/endpoints?integration=github")
        assert resp.status == 200
        html = await resp.text()
        cards = re.findall(r'<section class="card endpoint" data-method="(\w+)" data-path="([^"]+)"', html)
        assert sorted(cards) == [("GET", "/v1/github/issues"), ("POST", "/v1/github/issues")]
        for kind, name in (("sync", "issues"), ("action", "create-issue")):
            assert f'b-{kind}">{kind}</span> <strong>{name}</strong>' in html
        # The records response and the action's output refer to GithubIssue, whose schema is shown.
        assert html.count('href="#schema-GithubIssue"') == 2 and 'id="schema-GithubIssue"' in html
        model = html[html.index('id="schema-GithubIssue"'):]
        model = model[:model.index("</div>")]
        for field in ("&quot;closed_at&quot;", "&quot;labels&quot;", "&quot;number&quot;"):
            assert field in model, field
        assert "&quot;$ref&quot;: &quot;#/components/schemas/CreateIssue&quot;" in html  # the action's body
        assert "Authorization: Bearer $NANGO_SECRET_KEY" in html
        assert "/v1/openapi.json?provider_config_key=github" in html
        resp = await http.get(f"{stack.api_url}/dashboard/endpoints?integration={HOSTILE}")
        assert resp.status == 404 and "<script>alert" not in await resp.text()


async def test_environment_variables_set_and_unset_through_the_dashboard(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    base = stack.api_url
    async with stack.api(gh.key) as api:
        await api.request("POST", "/environment-variables", json=[{"name": "KEEP", "value": "kept"}])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http, stack.api(gh.key) as api:
        await _login(http, base, gh.key)
        page = await (await http.get(f"{base}/dashboard/variables")).text()
        token = _csrf(page)
        assert "<code>KEEP</code>" in page
        resp = await http.post(f"{base}/dashboard/variables", data={"op": "set", "name": "API_TOKEN",
                                                                    "value": "s3cret"}, allow_redirects=False)
        assert resp.status == 403
        resp = await http.post(f"{base}/dashboard/variables", data={"op": "set", "name": "API_TOKEN",
                                                                    "value": HOSTILE, "csrf": token})
        html = await resp.text()
        assert "Set API_TOKEN." in html and "<script>alert" not in html
        assert "&lt;script&gt;alert(" in html and "••••••••••••" in html  # masked, revealed on demand
        assert await api.request("GET", "/environment-variables") == [
            {"name": "API_TOKEN", "value": HOSTILE}, {"name": "KEEP", "value": "kept"}]
        resp = await http.post(f"{base}/dashboard/variables", data={"op": "set", "name": "API_TOKEN",
                                                                    "value": "rotated", "csrf": token})
        assert "Replaced API_TOKEN." in await resp.text()
        assert await api.request("GET", "/environment-variables") == [
            {"name": "API_TOKEN", "value": "rotated"}, {"name": "KEEP", "value": "kept"}]
        async with stack.pool.acquire() as conn:  # sealed at rest
            stored = await conn.fetch("SELECT value FROM environment_variables v JOIN environments e"
                                      " ON e.id = v.environment_id WHERE e.name = $1", gh.env)
        assert stored and all(b"rotated" not in bytes(r["value"]) for r in stored)
        resp = await http.post(f"{base}/dashboard/variables", data={"op": "set", "name": "1 bad", "value": "x",
                                                                    "csrf": token})
        assert 'class="flash error"' in await resp.text()
        resp = await http.post(f"{base}/dashboard/variables", data={"op": "unset", "name": "API_TOKEN",
                                                                    "csrf": token})
        assert "Unset API_TOKEN." in await resp.text()
        assert await api.request("GET", "/environment-variables") == [{"name": "KEEP", "value": "kept"}]
        resp = await http.post(f"{base}/dashboard/variables", data={"op": "unset", "name": "API_TOKEN",
                                                                    "csrf": token})
        assert "API_TOKEN is not set." in await resp.text()


async def test_disabling_and_enabling_a_sync_from_the_integrations_page(stack: Stack) -> None:
    from orchestrator.temporal import schedules

    gh = await setup_github(stack, issues=1)
    await wait_for_job(stack, gh)
    base = stack.api_url
    assert await schedules.describe(stack.client, gh.schedule_id()) is not None
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await _login(http, base, gh.key)
        page = await (await http.get(f"{base}/dashboard/integrations")).text()
        token = _csrf(page)
        assert 'data-op="disable" data-script="issues"' in page
        form = {"op": "disable", "integration": "github", "name": "issues", "kind": "sync",
                "next": "/dashboard/integrations"}
        resp = await http.post(f"{base}/dashboard/script", data=form, allow_redirects=False)
        assert resp.status == 403 and await schedules.describe(stack.client, gh.schedule_id()) is not None
        resp = await http.post(f"{base}/dashboard/script", data={**form, "csrf": token})
        html = await resp.text()
        assert "Disabled sync issues. 1 schedule removed." in html
        assert 'data-op="enable" data-script="issues"' in html and "b-disabled" in html
        assert await schedules.describe(stack.client, gh.schedule_id()) is None
        # A disabled sync's endpoint leaves the reference.
        endpoints = await (await http.get(f"{base}/dashboard/endpoints?integration=github")).text()
        assert 'data-method="GET"' not in endpoints and 'data-method="POST"' in endpoints
        resp = await http.post(f"{base}/dashboard/script", data={**form, "op": "enable", "csrf": token})
        assert "Enabled sync issues. 1 schedule created." in await resp.text()
        assert await schedules.describe(stack.client, gh.schedule_id()) is not None
        resp = await http.post(f"{base}/dashboard/script", data={**form, "name": HOSTILE, "csrf": token})
        html = await resp.text()
        assert 'class="flash error"' in html and "<script>alert" not in html


# ---- the browser ---------------------------------------------------------------------------------

async def test_every_page_in_chromium_with_pause_and_trigger(stack: Stack, browser: Any, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=4)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.request("POST", "/action/trigger", json={"action_name": "create-issue",
                                                           "input": {"title": "From the dashboard test"}},
                          headers={"Connection-Id": gh.connection_id, "Provider-Config-Key": "github"})
    base = stack.api_url
    page = await (await browser.new_context(viewport={"width": 1360, "height": 900})).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: dialog.accept())

    async def shot(name: str) -> None:
        await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

    await page.goto(base + "/")
    assert "/dashboard/login" in page.url
    await shot("login")
    await page.fill("#secret", gh.key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboard/connections**")
    assert await page.locator("table.conns").get_by_text(gh.connection_id).count() == 1
    await shot("connections")

    await page.click("nav.main >> text=Integrations")
    await page.wait_for_selector("text=create-issue")
    assert await page.locator("code", has_text="GET /github/issues").count() == 1
    await shot("integrations")

    await page.goto(f"{base}/dashboard/connection?integration=github&connection={gh.connection_id}")
    card = page.locator("section.sync[data-sync=issues]")
    assert await card.locator("svg.chart rect.bar").count() >= 1
    await shot("connection")

    # Pause: the page says so and so does the schedule.
    await card.locator("button[data-op=pause]").click()
    await page.wait_for_selector(".flash.ok >> text=Paused issues.")
    assert await card.locator(".badge", has_text="paused").count() == 1
    assert await _paused(stack, gh)
    # Trigger while paused: one more run, and the sync stays paused.
    await card.locator("button[data-op=trigger]").click()
    await page.wait_for_selector(".flash.ok >> text=Run of issues started.")
    await wait_for_job(stack, gh, count=2)
    assert await _paused(stack, gh)
    await page.goto(f"{base}/dashboard/sync?integration=github&connection={gh.connection_id}&sync=issues")
    await eventually(lambda: _rows_at_least(page, "table.runs tbody tr", 2), timeout=20)
    assert await page.locator("svg.chart rect.bar").count() >= 2
    await page.fill("input[name=frequency]", "every 2 hours")
    await page.click("button[data-op=frequency]")
    await page.wait_for_selector(".flash.ok >> text=issues now runs every 2 hours.")
    assert await page.locator(".tag", has_text="override").count() == 1
    await page.click("button[data-op=resume]")
    await page.wait_for_selector(".flash.ok >> text=Resumed issues.")
    assert not await _paused(stack, gh)
    await shot("sync")

    await page.click("table.runs tbody tr:last-child >> text=Logs")
    await page.wait_for_selector("table.logs")
    assert await page.locator("#logs tr").count() >= 1
    await shot("run")
    await page.select_option("select[name=level]", "error")
    await page.click(".logs-filter button[type=submit]")
    await page.wait_for_selector("#logs-empty")

    # Live tail: lines written while a run is going appear without a reload; the tail stops when it ends.
    pk, env_id = await _ids(stack, gh)
    async with stack.pool.acquire() as conn:
        live = await conn.fetchval(
            "INSERT INTO jobs (environment_id, connection_pk, script_name, kind, status, input)"
            " VALUES ($1, $2, 'create-issue', 'action', 'running', '{\"title\": \"tail\"}') RETURNING id", env_id, pk)
    await page.goto(f"{base}/dashboard/job?id={live}")
    await page.wait_for_selector("#tail-state >> text=live")
    async with stack.pool.acquire() as conn:
        await jobs_repo.add_logs(conn, live, [("info", "first live line", None), ("warn", "second live line", None)])
    await page.wait_for_selector("#logs >> text=second live line", timeout=10_000)
    async with stack.pool.acquire() as conn:
        await conn.execute("UPDATE jobs SET status = 'success', ended_at = now() WHERE id = $1", live)
    await page.wait_for_selector("#tail-state >> text=run success", timeout=10_000)

    await page.goto(f"{base}/dashboard/records?integration=github&connection={gh.connection_id}&model=GithubIssue")
    assert await page.locator("table.records tbody tr").count() >= 4
    await page.locator("table.records details").first.click()
    await page.wait_for_selector("text=_nango_metadata")
    await shot("records")

    await page.goto(f"{base}/dashboard/integrations")
    await page.click("a.endpoints-link")
    await page.wait_for_selector("section.endpoint[data-method=POST] >> text=create-issue")
    assert await page.locator("#schema-GithubIssue").count() == 1
    await shot("endpoints")
    await page.click("nav.main >> text=Variables")
    await page.fill("form.setvar input[name=name]", "FROM_BROWSER")
    await page.fill("form.setvar textarea[name=value]", "hidden value")
    await page.click("button[data-op=set]")
    await page.wait_for_selector(".flash.ok >> text=Set FROM_BROWSER.")
    assert not await page.get_by_text("hidden value").is_visible()
    await page.click("details.reveal summary")
    assert await page.get_by_text("hidden value").is_visible()
    await shot("variables")
    await page.click("button[data-op=unset][data-name=FROM_BROWSER]")
    await page.wait_for_selector(".flash.ok >> text=Unset FROM_BROWSER.")

    await page.click("nav.main >> text=Actions")
    await page.wait_for_selector("text=From the dashboard test")
    await shot("actions")
    async with stack.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO webhook_payloads (public_id, environment_id, integration_id, event_type, headers, body,"
            " status, connections) SELECT gen_random_uuid(), environment_id, integration_id, 'issues', '{}',"
            " convert_to('{\"action\": \"opened\"}', 'UTF8'), 'processed', ARRAY[connection_id]"
            " FROM connections WHERE id = $1", pk)
        await conn.execute("INSERT INTO notification_attempts (job_id, url, status) VALUES ($1, $2, 200)",
                           live, "https://app.example/hooks/nango?token=secret")
    await page.click("nav.main >> text=Webhooks")
    await page.wait_for_selector("text=Incoming from providers")
    await page.wait_for_selector("text=https://app.example/hooks/nango")
    assert await page.get_by_text("token=secret").count() == 0
    assert await page.locator("td", has_text="issues").count() >= 1
    await shot("webhooks")
    assert not errors, errors
    assert sorted(p.name for p in await asyncio.to_thread(lambda: list(tmp_path.glob("*.png")))) == sorted(
        f"{n}.png" for n in ("login", "connections", "integrations", "connection", "sync", "run", "records",
                             "actions", "webhooks", "endpoints", "variables"))


async def _rows_at_least(page: Any, selector: str, n: int) -> None:
    count = await page.locator(selector).count()
    if count < n:
        await page.reload()
    assert count >= n, count


def test_login_throttle_counts_failures_in_a_window() -> None:
    from orchestrator.dashboard.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(limit=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.blocked_for("1.2.3.4") == 0
        throttle.failed("1.2.3.4")
    assert throttle.blocked_for("1.2.3.4") == 60 and throttle.blocked_for("5.6.7.8") == 0
    now[0] += 61
    assert throttle.blocked_for("1.2.3.4") == 0


def test_login_throttle_forgets_old_clients_and_counts_an_ipv6_client_by_its_64() -> None:
    """A failed login from an address that never comes back was kept for good: memory grew with every one."""
    from orchestrator.dashboard.throttle import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(limit=3, window_s=60, clock=lambda: now[0])
    for i in range(5000):
        throttle.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle) == 5000
    now[0] += 61
    throttle.failed("192.0.2.1")
    assert len(throttle) == 1
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8:0:0:ffff::3"):  # one /64, three addresses
        throttle.failed(host)
    assert throttle.blocked_for("2001:db8::9") > 0 and throttle.blocked_for("2001:db8:0:1::1") == 0
    throttle.failed("::ffff:192.0.2.1")  # an IPv4-mapped address is its IPv4 address
    assert throttle.blocked_for("192.0.2.1") == 0
    throttle.failed("::ffff:192.0.2.1")
    assert throttle.blocked_for("192.0.2.1") > 0


async def test_too_many_failed_logins_are_refused(stack: Stack) -> None:
    # its own app instance, so the throttle it fills does not slow the other dashboard tests
    from aiohttp.test_utils import TestClient, TestServer

    from orchestrator.api.app import create_app

    async with TestClient(TestServer(create_app(stack.settings, temporal=stack.client))) as client:
        for _ in range(10):
            resp = await client.post("/dashboard/login", data={"secret": "not-a-key"}, allow_redirects=False)
            assert resp.status == 401
        resp = await client.post("/dashboard/login", data={"secret": "not-a-key"}, allow_redirects=False)
        assert resp.status == 429 and "Too many failed sign-ins" in await resp.text()


async def test_a_rotated_out_key_cannot_sign_in_to_the_dashboard(stack: Stack) -> None:
    """The API accepts the previous key until its grace period ends; a dashboard session made with it carried the
    current key's fingerprint and stayed valid for its own twelve hours after the old key stopped working."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        rotated = await api.request("POST", "/environment/rotate-key", json={"grace_period_s": 3600})
        assert (await api.request("GET", "/environment-variables")) == []  # the old key still works on the API
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{stack.api_url}/dashboard/login", data={"secret": key}, allow_redirects=False) as resp:
            assert resp.status == 401 and "rotated" in await resp.text()
        async with http.post(f"{stack.api_url}/dashboard/login", allow_redirects=False,
                             data={"secret": rotated["secret_key"]}) as resp:
            assert resp.status == 302
