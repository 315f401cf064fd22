"""Red team, issue 16 point 9: provider webhooks need a signing secret, and a payload no connection
matches is stored as unmatched, never fanned out to every connection. Through the real stack."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import aiohttp
import orjson

from orchestrator.providers.webhook_signatures import verify_signature
from tests.conftest import GithubSetup, Stack, eventually, setup_github, wait_for_job
from tests.redteam import assert_no_secret, normal_sync_after


def _issue_event(repo: str, title: str) -> bytes:
    return orjson.dumps({"action": "edited", "repository": {"full_name": repo},
                         "issue": {"id": 424242, "number": 77, "title": title, "body": None, "state": "open",
                                   "html_url": "u", "user": None, "labels": [], "created_at": "c",
                                   "updated_at": "u", "closed_at": None}})


async def _post(stack: Stack, gh: GithubSetup, body: bytes, secret: str | None = None) -> tuple[int, Any]:
    headers = {"X-GitHub-Event": "issues", "Content-Type": "application/json"}
    if secret:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    async with aiohttp.ClientSession() as http, http.post(
            f"{stack.api_url}/webhook/{gh.env}/github", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def _payloads(stack: Stack, env: str) -> list[dict[str, Any]]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT w.status, w.connections, w.error FROM webhook_payloads w JOIN environments e"
                                " ON e.id = w.environment_id WHERE e.name = $1 ORDER BY w.id", env)
    return [dict(r) for r in rows]


async def _webhook_jobs(stack: Stack, env: str) -> list[dict[str, Any]]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch("SELECT j.id, j.status, j.connection_pk FROM jobs j JOIN environments e"
                                " ON e.id = j.environment_id WHERE e.name = $1 AND j.kind = 'webhook'", env)
    return [dict(r) for r in rows]


def test_without_a_secret_only_an_explicit_opt_in_accepts_a_webhook() -> None:
    import pytest

    from orchestrator.providers.webhook_signatures import SecretRequiredError

    with pytest.raises(SecretRequiredError) as exc:
        verify_signature(None, {}, b"{}", integration="github")
    assert "integration 'github' has no webhook signing secret" in exc.value.message
    assert '"webhook_accept_unsigned": true' in exc.value.message and "webhook_secret" in exc.value.message
    verify_signature(None, {}, b"{}", integration="github", accept_unsigned=True)
    verify_signature("", {}, b"{}", integration="github", accept_unsigned=True)


async def test_an_unsigned_webhook_is_refused_without_a_secret_and_accepted_after_opting_in(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={
            "webhook_routing": {"body_path": "repository.full_name", "metadata_key": "repo"}})
        status, body = await _post(stack, gh, _issue_event(gh.repo, "forged"))
        assert status == 401, body
        assert body["error"]["code"] == "webhook_secret_required"
        assert "integration 'github' has no webhook signing secret" in body["error"]["message"]
        assert "PATCH /integrations/github" in body["error"]["message"]
        assert await _payloads(stack, gh.env) == []  # nothing stored, nothing run
        integration = (await api.request("GET", "/integrations/github", params={"include": "webhook"}))["data"]
        assert integration["webhook_accept_unsigned"] is False and integration["has_webhook_secret"] is False

        await api.request("PATCH", "/integrations/github", json={"webhook_accept_unsigned": True})
        integration = (await api.request("GET", "/integrations/github", params={"include": "webhook"}))["data"]
        assert integration["webhook_accept_unsigned"] is True
        status, body = await _post(stack, gh, _issue_event(gh.repo, "unsigned but allowed"))
        assert status == 200, body

        async def applied() -> None:
            got = await api.list_records("github", gh.connection_id, "GithubIssue", filter="updated,added")
            assert "unsigned but allowed" in [r["title"] for r in got["records"]], got
        await eventually(applied, timeout=30)
        await eventually(lambda: _processed(stack, gh.env, 1), timeout=30)

        # a secret set later wins over the opt-in: unsigned is refused again, signed accepted
        await api.request("PATCH", "/integrations/github", json={"webhook_secret": "whsec-red"})
        status, body = await _post(stack, gh, _issue_event(gh.repo, "unsigned again"))
        assert status == 401 and body["error"]["code"] == "invalid_signature", body
        status, body = await _post(stack, gh, _issue_event(gh.repo, "signed"), secret="whsec-red")
        assert status == 200, body
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_a_payload_matching_no_connection_is_stored_unmatched_and_runs_nothing(stack: Stack) -> None:
    gh = await setup_github(stack, issues=2)
    async with stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": gh.repo})
        await wait_for_job(stack, gh, count=2)
        await api.request("PATCH", "/integrations/github", json={"webhook_secret": "whsec-red"})

        # no routing rule: a payload matches no connection (it used to go to both)
        status, body = await _post(stack, gh, _issue_event(gh.repo, "to nobody"), secret="whsec-red")
        assert status == 200, body

        async def unmatched(n: int) -> list[dict[str, Any]]:
            rows = await _payloads(stack, gh.env)
            assert len(rows) == n and rows[-1]["status"] == "unmatched", rows
            return rows
        rows = await eventually(lambda: unmatched(1), timeout=30)
        assert rows[0]["connections"] == [] and "has no webhook_routing" in rows[0]["error"]

        # a routing rule the payload does not satisfy
        await api.request("PATCH", "/integrations/github", json={
            "webhook_routing": {"body_path": "repository.full_name", "metadata_key": "repo"}})
        status, body = await _post(stack, gh, _issue_event("someone-else/repo", "other tenant"), secret="whsec-red")
        assert status == 200, body
        rows = await eventually(lambda: unmatched(2), timeout=30)
        assert "no connection matches the payload" in rows[1]["error"] and "'someone-else/repo'" in rows[1]["error"]
        assert await _webhook_jobs(stack, gh.env) == []  # no script ran for any connection
        got = await api.list_records("github", gh.connection_id, "GithubIssue")
        assert all(r["title"] not in ("to nobody", "other tenant") for r in got["records"])

        # shown on the dashboard's webhooks page, with the reason
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post(f"{stack.api_url}/dashboard/login", data={"secret": gh.key, "next": "/dashboard/webhooks"})
            async with http.get(f"{stack.api_url}/dashboard/webhooks") as resp:
                assert resp.status == 200
                html = await resp.text()
        assert re.search(r'class="badge b-unmatched">unmatched<', html), html[:2000]
        assert "no connection matches the payload" in html

        # a matching payload still reaches exactly the matching connections
        status, body = await _post(stack, gh, _issue_event(gh.repo, "to both"), secret="whsec-red")
        assert status == 200
        done = await eventually(lambda: _processed(stack, gh.env, 3), timeout=30)
        assert sorted(done["connections"]) == ["conn-1", "conn-2"]
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=2)


async def _processed(stack: Stack, env: str, n: int) -> dict[str, Any]:
    rows = await _payloads(stack, env)
    assert len(rows) == n and rows[-1]["status"] == "processed", rows
    return rows[-1]


async def test_the_dev_stack_wiring_delivers_the_demo_providers_signed_webhooks(stack: Stack) -> None:
    """`nango dev` gives the example integration the demo's signing secret and a routing rule
    (devstack.dev.wire_webhooks): the demo's signed events reach on_webhook of the right connection."""
    from orchestrator.devstack.dev import wire_webhooks

    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh)
    try:
        await wire_webhooks(stack.api_url, gh.key, stack.demo, gh.env)
        assert stack.demo.webhook_url == f"{stack.api_url}/webhook/{gh.env}/github"
        stack.demo.update_issue(gh.repo, 1, title="edited in the demo")
        async with stack.api(gh.key) as api:
            async def applied() -> None:
                got = await api.list_records("github", gh.connection_id, "GithubIssue", filter="updated")
                assert [r["title"] for r in got["records"]] == ["edited in the demo"], got
            await eventually(applied, timeout=30)
    finally:
        stack.demo.webhook_url = None
    done = await eventually(lambda: _processed(stack, gh.env, 1), timeout=30)
    assert done["connections"] == [gh.connection_id]
    await assert_no_secret(stack, gh.env)
