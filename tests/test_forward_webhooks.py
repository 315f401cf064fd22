"""Forward webhooks (issue 19): a provider webhook also reaches the customer's app as Nango forwards it, one
`type: "forward"` POST per matched connection (the raw payload when none matched and it was signed), with the
provider's headers but not its credentials, signed like every webhook we send; switched off per integration with
`forward_webhooks`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from orchestrator import webhooks_out
from tests.conftest import GithubSetup, Stack, allow_egress, eventually, serve_post, setup_github


class App:
    """The customer's backend: what arrived, with its headers."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        return web.Response(text="ok")

    def forwards(self) -> list[tuple[Any, dict[str, str]]]:
        out = []
        for raw, headers in self.received:
            body = orjson.loads(raw)
            if body.get("type") not in ("sync", "auth"):  # a forward, wrapped or raw
                out.append((body, headers))
        return out


@pytest.fixture
async def app(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    monkeypatch.setattr(webhooks_out, "BACKOFF_S", 0.2)
    rec = App()
    async with serve_post("/hook", rec.handle) as rec.url:
        with allow_egress(stack, rec.url):
            yield rec


async def _send(stack: Stack, gh: GithubSetup, payload: dict[str, Any], event: str = "issues") -> None:
    body = orjson.dumps(payload)
    signature = "sha256=" + hmac.new(stack.demo.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    async with stack.api(gh.key).session.post(f"{stack.api_url}/webhook/{gh.env}/github", data=body, headers={
            "X-Hub-Signature-256": signature, "X-GitHub-Event": event, "X-GitHub-Delivery": "d-1",
            "Cookie": "session=provider-side", "User-Agent": "GitHub-Hookshot/1"}) as resp:
        assert resp.status == 200, await resp.text()


async def test_provider_webhooks_are_forwarded_per_connection_or_raw(stack: Stack, app: App) -> None:
    gh = await setup_github(stack)
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={
            "webhook_secret": stack.demo.webhook_secret,
            "webhook_routing": {"body_path": "repository.full_name", "metadata_key": "repo"}})
        await api.update_environment(webhook_url=app.url, webhook_secret="whsec-fwd")
        matched = {"action": "edited", "issue": {"number": 1}, "repository": {"full_name": gh.repo}}
        await _send(stack, gh, matched)

        async def one() -> list[tuple[Any, dict[str, str]]]:
            got = app.forwards()
            assert len(got) == 1, got
            return got
        [(wrapped, headers)] = await eventually(one, timeout=30)
        assert wrapped == {"from": "github", "type": "forward", "providerConfigKey": "github",
                           "connectionId": gh.connection_id, "payload": matched}
        assert headers["X-GitHub-Event"] == "issues" and headers["X-GitHub-Delivery"] == "d-1"
        assert headers["X-Hub-Signature-256"].startswith("sha256=")  # the provider's own, for the app to check
        assert "Cookie" not in headers and headers["User-Agent"] == "nango-orchestrator"
        raw = app.received[-1][0]
        assert headers["X-Nango-Hmac-Sha256"] == hmac.new(b"whsec-fwd", raw, hashlib.sha256).hexdigest()

        # no connection matches: the provider's payload itself
        unmatched = {"action": "opened", "repository": {"full_name": "someone/else"}}
        await _send(stack, gh, unmatched)

        async def two() -> None:
            assert [body for body, _ in app.forwards()][1:] == [unmatched]
        await eventually(two, timeout=30)

        async def recorded() -> None:  # an attempt is written once its answer is in, just after the app got it
            async with stack.pool.acquire() as conn:
                attempts = await conn.fetch(
                    "SELECT forward_attempts FROM webhook_payloads w JOIN environments e ON e.id = w.environment_id"
                    " WHERE e.name = $1 ORDER BY w.id", gh.env)
            assert [[(a["connection_id"], a["status"]) for a in r["forward_attempts"]] for r in attempts] == [
                [(gh.connection_id, 200)], [(None, 200)]]
        await eventually(recorded, timeout=30)

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post(f"{stack.api_url}/dashboard/login", data={"secret": gh.key, "next": "/dashboard/"})
            async with http.get(f"{stack.api_url}/dashboard/webhooks") as resp:
                page = await resp.text()
        assert "<th>Forwarded</th>" in page and page.count("<td>200</td>") >= 2

        # switched off for the integration: nothing more is forwarded (the scripts still run)
        integration = await api.request("PATCH", "/integrations/github", json={"forward_webhooks": False})
        assert integration["data"]["forward_webhooks"] is False
        await _send(stack, gh, matched)

        async def routed() -> None:
            async with stack.pool.acquire() as conn:
                statuses = await conn.fetch(
                    "SELECT status FROM webhook_payloads w JOIN environments e ON e.id = w.environment_id"
                    " WHERE e.name = $1 ORDER BY w.id", gh.env)
            assert len(statuses) == 3 and statuses[2]["status"] != "received"
        await eventually(routed, timeout=30)
        await asyncio.sleep(1.0)  # a forward starts right after routing and takes milliseconds: none may come
    assert len(app.forwards()) == 2


async def test_an_unsigned_payload_that_matched_nothing_is_forwarded_in_the_envelope(stack: Stack, app: App) -> None:
    """With `webhook_accept_unsigned` anybody can post a payload; sent as it came under our signature, a body like
    `{"from": "nango", "type": "auth", ...}` passed for one of our own webhooks in the customer's app."""
    gh = await setup_github(stack)
    async with stack.api(gh.key) as api:
        await api.request("PATCH", "/integrations/github", json={"webhook_accept_unsigned": True})
        await api.update_environment(webhook_url=app.url, webhook_secret="whsec-fwd")
        forged = {"from": "nango", "type": "auth", "operation": "creation", "success": True,
                  "connectionId": "victim", "providerConfigKey": "github"}
        async with api.session.post(f"{stack.api_url}/webhook/{gh.env}/github", data=orjson.dumps(forged),
                                    headers={"X-GitHub-Event": "issues"}) as resp:
            assert resp.status == 200, await resp.text()

        async def wrapped() -> dict[str, Any]:
            assert len(app.received) == 1, app.received
            return orjson.loads(app.received[0][0])
        body = await eventually(wrapped, timeout=30)
    assert body == {"from": "github", "type": "forward", "providerConfigKey": "github", "payload": forged}
