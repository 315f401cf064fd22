"""Provider webhooks, connection events and result notifications, through the real stack."""

from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from orchestrator.devstack.processes import free_port
from tests.conftest import EXAMPLES, Stack, allow_egress, eventually, setup_github, wait_for_job


async def test_provider_webhook_updates_records_through_on_webhook(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={
            "webhook_secret": stack.demo.webhook_secret,
            "webhook_routing": {"body_path": "repository.full_name", "metadata_key": "repo"}})
        stack.demo.webhook_url = f"{stack.api_url}/webhook/{gh.env}/github"
        try:
            stack.demo.update_issue(gh.repo, 2, title="edited on github")

            async def applied() -> None:
                recs = await api.list_records("github", "conn-1", "GithubIssue", filter="updated")
                assert [r["title"] for r in recs["records"]] == ["edited on github"], recs
            await eventually(applied, timeout=30)
        finally:
            stack.demo.webhook_url = None
        async with stack.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, event_type, connections FROM webhook_payloads w JOIN "
                                      "environments e ON e.id = w.environment_id WHERE e.name = $1", gh.env)
        assert row["event_type"] == "issues" and row["connections"] == ["conn-1"]

        body = orjson.dumps({"action": "edited", "issue": {}})
        async with stack.api(gh.key).session.post(f"{stack.api_url}/webhook/{gh.env}/github", data=body, headers={
                "X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "issues"}) as resp:
            assert resp.status == 401
            assert "does not match" in (await resp.json())["error"]["message"]


async def test_sync_results_are_posted_signed_to_the_environment_webhook(stack: Stack) -> None:
    received: list[tuple[dict, str]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((orjson.loads(body), request.headers.get("X-Nango-Hmac-Sha256", "")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with allow_egress(stack, f"http://127.0.0.1:{port}"):  # the customer's app, on loopback here
            env, key = await stack.new_environment()
            async with stack.api(key) as api:
                await api.request("PATCH", "/environment", json={"webhook_url": f"http://127.0.0.1:{port}/hook",
                                                                "webhook_secret": "whsec"})
            # deploy and connect in this environment
            from orchestrator.authoring.compile import compile_project
            repo = stack.demo.add_repo(f"{env}/repo", 2)
            async with stack.api(key) as api:
                await api.deploy(compile_project(EXAMPLES))
                await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                            connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})

            async def got() -> tuple[dict[str, Any], str]:
                # the connection's auth webhook (type "auth", operation "creation") comes first, signed alike
                synced = [(p, s) for p, s in received if p["type"] == "sync"]
                assert synced and any(p["type"] == "auth" for p, _ in received), received
                return synced[0]
            payload, signature = await eventually(got, timeout=30)
            assert payload["success"] is True
            assert payload["connectionId"] == "conn-1" and payload["syncName"] == "issues"
            assert payload["model"] == "GithubIssue"
            assert payload["responseResults"] == {"added": 2, "updated": 0, "deleted": 0}
            expected = hmac.new(b"whsec", orjson.dumps(payload), hashlib.sha256).hexdigest()
            assert signature == expected
    finally:
        await runner.cleanup()


async def test_connection_events_validate_create_and_delete(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text().replace("    actions:\n", (
        "    on-events:\n      validate-connection: [check-repo]\n"
        "      post-connection-creation: [welcome]\n      pre-connection-deletion: [goodbye]\n    actions:\n"), 1)
    (folder / "nango.yaml").write_text(text)
    (folder / "github/on-events").mkdir()
    (folder / "github/on-events/check_repo.py").write_text(
        "async def on_event(nango):\n"
        "    if not (await nango.get_metadata()).get('repo'):\n"
        "        raise ValueError('metadata.repo is required')\n")
    (folder / "github/on-events/welcome.py").write_text(
        "async def on_event(nango):\n    await nango.update_metadata({'welcomed': True})\n")
    (folder / "github/on-events/goodbye.py").write_text(
        "async def on_event(nango):\n    await nango.log('goodbye', level='info')\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    async with stack.api(gh.key) as api:
        err = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "github", "connection_id": "no-repo",
            "credentials": {"type": "OAUTH2", "access_token": "demo-token"}})
        assert "metadata.repo is required" in err["error"]["message"]
        assert all(c["connection_id"] != "no-repo" for c in await api.list_connections())

        async def welcomed() -> None:
            conn = await api.get_connection("github", "conn-1")
            assert conn["metadata"].get("welcomed") is True, conn["metadata"]
        await eventually(welcomed, timeout=30)

        await api.request("DELETE", "/connections/conn-1", params={"provider_config_key": "github"})
        assert await api.list_connections() == []


async def _issue_event(stack: Stack, gh: Any, title: str, **extra: Any) -> tuple[bytes, dict[str, str]]:
    """The integration set to route GitHub's signed `issues` events by repository; one such event, signed."""
    from orchestrator.demo_provider.app import sign_webhook

    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={
            "webhook_secret": stack.demo.webhook_secret,
            "webhook_routing": {"body_path": "repository.full_name", "metadata_key": "repo"}})
    issue = {**stack.demo.get_issue(gh.repo, 1), "title": title}
    body = orjson.dumps({"action": "edited", "issue": issue,
                         "repository": stack.demo.render_repo(stack.demo.repo(gh.repo)), **extra})
    return body, {"X-Hub-Signature-256": sign_webhook(stack.demo.webhook_secret, body), "X-GitHub-Event": "issues"}


async def _applied(stack: Stack, gh: Any, title: str) -> None:
    async with stack.api(gh.key) as api:
        async def check() -> None:
            recs = await api.list_records("github", "conn-1", "GithubIssue", filter="updated")
            assert [r["title"] for r in recs["records"]] == [title], recs
        await eventually(check, timeout=30)


async def test_a_payload_holding_a_nul_character_is_routed_and_run(stack: Stack) -> None:
    """`\\u0000` is valid JSON that jsonb refuses: the webhook job's input could not be stored, so the payload
    failed on every attempt and was dispatched again by every maintenance pass for ever."""
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    body, headers = await _issue_event(stack, gh, "from the webhook", sender={"login": "nul\u0000user"})
    async with stack.api(gh.key) as api:
        async with api.session.post(f"{stack.api_url}/webhook/{gh.env}/github", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
    await _applied(stack, gh, "from the webhook")
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT j.status, j.input->'payload'->'sender'->>'login' AS login FROM jobs j"
                                " JOIN connections c ON c.id = j.connection_pk JOIN environments e"
                                " ON e.id = c.environment_id WHERE e.name = $1 AND j.kind = 'webhook'", gh.env)
    assert [r["status"] for r in rows] == ["success"] and "\x00" not in rows[0]["login"], rows


async def test_a_stored_payload_is_answered_200_when_temporal_refuses_and_runs_later(stack: Stack) -> None:
    """A 500 after storing made the provider send the payload again, to be run twice (the stored copy is
    dispatched by the maintenance loop as well). Here the API's Temporal namespace does not exist."""
    from aiohttp.test_utils import TestClient, TestServer
    from temporalio.client import Client

    from orchestrator.api.app import create_app
    from orchestrator.control import maintenance

    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    body, headers = await _issue_event(stack, gh, "applied later")
    nowhere = await Client.connect(stack.settings.temporal_address, namespace="no-such-namespace")
    async with TestClient(TestServer(create_app(stack.settings, temporal=nowhere))) as lost:
        resp = await lost.post(f"/webhook/{gh.env}/github", data=body, headers=headers)
        assert resp.status == 200, await resp.text()
    async with stack.pool.acquire() as conn:  # a minute on: the maintenance loop finds it stuck
        await conn.execute("UPDATE webhook_payloads w SET received_at = now() - interval '2 minutes'"
                           " FROM environments e WHERE e.id = w.environment_id AND e.name = $1", gh.env)
    async with stack.platform() as platform:
        assert await maintenance.redispatch_webhooks(platform) >= 1
    await _applied(stack, gh, "applied later")
