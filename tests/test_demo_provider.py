"""The demo provider behaves like GitHub's REST API on the wire."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.demo_provider import DemoState, create_app, serve, sign_webhook

AUTH = {"Authorization": "Bearer demo-token"}
ISSUES = "/repos/demo/hello-world/issues"
LINK_RE = re.compile(r'<([^>]+)>;\s*rel="([a-z]+)"')


def links(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {rel: url for url, rel in LINK_RE.findall(resp.headers.get("Link", ""))}


@asynccontextmanager
async def provider(state: DemoState | None = None, **kwargs: Any) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(state, **kwargs))) as client:
        yield client


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_pagination_walks_all_pages_via_link() -> None:
    async with provider(DemoState(seed_issues=25)) as client:
        url: str | None = str(client.make_url(ISSUES)) + "?per_page=10&state=all"
        seen: list[int] = []
        pages = 0
        while url:
            async with client.session.get(url, headers=AUTH) as resp:
                assert resp.status == 200
                for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
                    assert resp.headers[header].isdigit()
                body = await resp.json()
                rels = links(resp)
            pages += 1
            seen += [issue["number"] for issue in body]
            if pages == 1:
                assert set(rels) == {"next", "last"}
                assert "page=3" in rels["last"] and "state=all" in rels["last"]
            url = rels.get("next")
        assert pages == 3
        assert seen == list(range(25, 0, -1))  # default sort: created desc
        assert set(rels) == {"prev", "first"}


async def test_issue_shape_and_single_page_has_no_link() -> None:
    async with provider(DemoState(seed_issues=3)) as client:
        resp = await client.get(
            ISSUES, params={"direction": "asc"}, headers={"Authorization": "token demo-token"}
        )
        assert resp.status == 200
        assert "Link" not in resp.headers
        issues = await resp.json()
        first = issues[0]
        assert first["number"] == 1 and first["title"] == "Issue 1"
        assert isinstance(first["id"], int)
        assert first["state"] == "open" and first["closed_at"] is None
        assert first["created_at"] == first["updated_at"] == "2024-01-01T00:00:00Z"
        assert issues[1]["created_at"] == "2024-01-01T01:00:00Z"
        assert first["user"]["login"] == "demo-user" and isinstance(first["user"]["id"], int)
        assert all("name" in label for label in first["labels"])
        assert first["html_url"].endswith("/demo/hello-world/issues/1")

        one = await client.get(f"{ISSUES}/2", headers=AUTH)
        assert (await one.json())["title"] == "Issue 2"
        missing = await client.get(f"{ISSUES}/99", headers=AUTH)
        assert missing.status == 404 and (await missing.json())["message"] == "Not Found"


async def test_since_state_and_sort_filters() -> None:
    state = DemoState(seed_issues=10)
    async with provider(state) as client:
        resp = await client.get(ISSUES, params={"since": "2024-01-01T07:00:00Z"}, headers=AUTH)
        assert sorted(i["number"] for i in await resp.json()) == [8, 9, 10]

        state.update_issue("demo/hello-world", 2, state="closed")
        params = {"since": "2024-06-01T00:00:00Z", "state": "all"}
        resp = await client.get(ISSUES, params=params, headers=AUTH)
        [closed] = await resp.json()
        assert closed["number"] == 2 and closed["state"] == "closed" and closed["closed_at"]
        open_numbers = [i["number"] for i in await (await client.get(ISSUES, headers=AUTH)).json()]
        assert 2 not in open_numbers and len(open_numbers) == 9

        resp = await client.get(ISSUES, params={"sort": "updated", "direction": "desc", "state": "all"},
                                headers=AUTH)
        assert (await resp.json())[0]["number"] == 2

        bad = await client.get(ISSUES, params={"since": "yesterday"}, headers=AUTH)
        assert bad.status == 422


async def test_auth_failures() -> None:
    state = DemoState()
    expired = state.issue_token(ttl_seconds=0)["access_token"]
    fresh = state.issue_token()["access_token"]
    async with provider(state) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {expired}"},
                        {"Authorization": "Basic ZGVtbzp4"}):
            resp = await client.get("/user", headers=headers)
            assert resp.status == 401
            body = await resp.json()
            assert body["message"] in ("Bad credentials", "Requires authentication")
            assert "documentation_url" in body
        ok = await client.get("/user", headers={"Authorization": f"token {fresh}"})
        assert ok.status == 200 and (await ok.json())["login"] == "demo-user"

        minted = await (await client.post("/_admin/tokens", json={"ttl_seconds": 60})).json()
        assert minted["token_type"] == "bearer" and minted["expires_in"] == 60
        repos = await client.get("/user/repos", headers={"Authorization": f"Bearer {minted['access_token']}"})
        assert [r["full_name"] for r in await repos.json()] == ["demo/hello-world"]
    assert any(r["path"] == "/user" and r["auth"] is False for r in state.requests)
    assert all("nope" not in str(r) for r in state.requests)


async def test_create_and_patch_issue() -> None:
    state = DemoState(seed_issues=2)
    async with provider(state) as client:
        resp = await client.post(ISSUES, json={"title": "New", "body": "b", "labels": ["bug"]}, headers=AUTH)
        assert resp.status == 201
        created = await resp.json()
        assert created["number"] == 3 and resp.headers["Location"] == created["url"]
        assert [label["name"] for label in created["labels"]] == ["bug"]

        missing_title = await client.post(ISSUES, json={"body": "x"}, headers=AUTH)
        assert missing_title.status == 422

        resp = await client.patch(f"{ISSUES}/1", json={"state": "closed", "title": "Renamed"}, headers=AUTH)
        patched = await resp.json()
        assert patched["state"] == "closed" and patched["title"] == "Renamed"
        assert patched["updated_at"] > "2024-01-01T00:00:00Z"

        await client.delete("/_admin/repos/demo/hello-world/issues/2")
        gone = await client.get(f"{ISSUES}/2", headers=AUTH)
        assert gone.status == 410


async def test_admin_endpoints_and_reset() -> None:
    state = DemoState(seed_issues=2)
    async with provider(state) as client:
        resp = await client.post("/_admin/issues", json={"title": "From admin"})
        assert resp.status == 201 and (await resp.json())["number"] == 3
        resp = await client.patch("/_admin/repos/demo/hello-world/issues/1", json={"body": "changed"})
        assert (await resp.json())["body"] == "changed"
        assert state.get_issue("demo/hello-world", 1)["updated_at"] != "2024-01-01T00:00:00Z"
        assert (await client.get("/health")).status == 200
        await client.get("/user", headers=AUTH)
        logged = await (await client.get("/_admin/requests")).json()
        assert [r["path"] for r in logged] == ["/user"] and logged[0]["auth"] is True
        assert (await client.post("/_admin/reset")).status == 204
        assert state.requests == []
        assert state.get_issue("demo/hello-world", 1)["body"] == "Body of issue 1."


async def test_oauth_code_and_refresh_flow() -> None:
    state = DemoState()
    async with provider(state) as client:
        resp = await client.get(
            "/login/oauth/authorize",
            params={"client_id": "demo-client-id", "redirect_uri": "http://app.test/cb?x=1", "state": "s1",
                    "scope": "repo user"},
            allow_redirects=False,
        )
        assert resp.status == 302
        location = urlsplit(resp.headers["Location"])
        assert location.netloc == "app.test" and location.path == "/cb"
        query = parse_qs(location.query)
        assert query["state"] == ["s1"] and query["x"] == ["1"]
        code = query["code"][0]

        form = {"client_id": "demo-client-id", "client_secret": "wrong", "code": code,
                "redirect_uri": "http://app.test/cb?x=1", "grant_type": "authorization_code"}
        json_accept = {"Accept": "application/json"}
        bad = await client.post("/login/oauth/access_token", data=form, headers=json_accept)
        assert bad.status == 401 and (await bad.json())["error"] == "incorrect_client_credentials"

        form["client_secret"] = "demo-client-secret"
        resp = await client.post("/login/oauth/access_token", data=form, headers=json_accept)
        assert resp.status == 200
        token = await resp.json()
        assert token["token_type"] == "bearer" and token["expires_in"] == 3600
        assert token["scope"] == "repo,user"
        user = await client.get("/user", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert user.status == 200

        reused = await client.post("/login/oauth/access_token", data=form, headers=json_accept)
        assert reused.status == 400 and (await reused.json())["error"] == "bad_verification_code"

        refresh = {"client_id": "demo-client-id", "client_secret": "demo-client-secret",
                   "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        resp = await client.post("/login/oauth/access_token", json=refresh, headers=json_accept)
        rotated = await resp.json()
        assert resp.status == 200 and rotated["refresh_token"] != token["refresh_token"]
        assert rotated["access_token"] != token["access_token"]
        again = await client.post("/login/oauth/access_token", json=refresh, headers=json_accept)
        assert again.status == 400 and (await again.json())["error"] == "bad_refresh_token"

        # Without Accept: application/json GitHub answers form-encoded.
        refresh["refresh_token"] = rotated["refresh_token"]
        resp = await client.post("/login/oauth/access_token", data=refresh)
        assert resp.content_type == "application/x-www-form-urlencoded"
        assert parse_qs(await resp.text())["token_type"] == ["bearer"]


async def test_fail_next_429_then_recovers() -> None:
    state = DemoState()
    async with provider(state) as client:
        state.fail_next(2, status=429, retry_after=3)
        for _ in range(2):
            resp = await client.get("/user", headers=AUTH)
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "3"
            assert resp.headers["X-RateLimit-Remaining"] == "0"
            assert "rate limit" in (await resp.json())["message"]
        assert (await client.get("/user", headers=AUTH)).status == 200

        await client.post("/_admin/fail_next", json={"count": 1, "status": 503, "retry_after": None})
        resp = await client.get(ISSUES, headers=AUTH)
        assert resp.status == 503 and "Retry-After" not in resp.headers

        await client.post("/_admin/fail_next", json={"count": 1, "mode": "garbage"})
        resp = await client.get(ISSUES, headers=AUTH)
        assert resp.status == 200
        try:
            await resp.json()
        except ValueError:
            pass
        else:
            raise AssertionError("garbage mode must not return JSON")
        assert (await client.get(ISSUES, headers=AUTH)).status == 200
    assert [r["status"] for r in state.requests] == [429, 429, 200, 503, 200, 200]


async def test_primary_rate_limit_exhaustion() -> None:
    state = DemoState(rate_limit=2)
    async with provider(state) as client:
        first = await client.get("/user", headers=AUTH)
        assert first.headers["X-RateLimit-Remaining"] == "1"
        await client.get("/user", headers=AUTH)
        resp = await client.get("/user", headers=AUTH)
        assert resp.status == 403 and resp.headers["X-RateLimit-Remaining"] == "0"
        assert int(resp.headers["X-RateLimit-Reset"]) > time.time()


async def test_webhook_delivery_signed() -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    receiver = web.Application()
    receiver.router.add_post("/hooks", receive)
    async with TestServer(receiver) as hook_server:
        state = DemoState(seed_issues=1, installation_id=42)
        async with provider(state, webhook_url=str(hook_server.make_url("/hooks"))) as client:
            resp = await client.post(ISSUES, json={"title": "Hooked"}, headers=AUTH)
            number = (await resp.json())["number"]
            await client.patch(f"{ISSUES}/{number}", json={"state": "closed"}, headers=AUTH)
            state.update_issue("demo/hello-world", 1, title="Edited")
            await eventually(lambda: len(state.deliveries) == 3)

        assert [d["action"] for d in state.deliveries] == ["opened", "closed", "edited"]
        assert all(d["status"] == 202 and d["error"] is None for d in state.deliveries)
        headers, body = received[0]
        assert headers["X-GitHub-Event"] == "issues"
        assert re.fullmatch(r"[0-9a-f-]{36}", headers["X-GitHub-Delivery"])
        expected = sign_webhook("demo-webhook-secret", body)
        assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
        payload = json.loads(body)
        assert payload["action"] == "opened" and payload["issue"]["title"] == "Hooked"
        assert payload["repository"]["full_name"] == "demo/hello-world"
        assert payload["installation"]["id"] == 42
        edited = received[2][1]
        assert b'"changes":{"title":{"from":"Issue 1"}}' in edited


async def test_serve_binds_a_port() -> None:
    runner = await serve("127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/health") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()
