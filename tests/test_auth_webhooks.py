"""Auth webhooks (issue 19): Nango's `type: "auth"` payloads to the environment's webhook URL when a connection is
created, has its credentials replaced, fails to connect, has its token refresh refused or is deleted; signed so
that `@nangohq/node`'s `verifyIncomingWebhookRequest` accepts them; every attempt on the dashboard; each kind
switched by the environment's `on_auth_creation` / `on_auth_refresh_error`."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from orchestrator import webhooks_out
from tests.conftest import Stack, allow_egress, eventually, serve_post, setup_github
from tests.test_node_client import _install
from tests.test_node_client import _run as run_node

VERIFY = """
const { Nango } = require('@nangohq/node');
const nango = new Nango({ secretKey: 'unused', webhookSigningKey: process.env.SIGNING_KEY });
const got = JSON.parse(process.env.DELIVERIES);
console.log(JSON.stringify(got.map(([body, headers]) => nango.verifyIncomingWebhookRequest(body, headers))));
"""


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str]]] = []  # raw body, headers
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(((await request.read()).decode(), dict(request.headers)))
        return web.Response(text="ok")

    def auth(self) -> list[dict[str, Any]]:
        return [body for body in (json.loads(raw) for raw, _ in self.received) if body["type"] == "auth"]


@pytest.fixture
async def receiver(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Receiver]:
    monkeypatch.setattr(webhooks_out, "BACKOFF_S", 0.2)
    rec = Receiver()
    async with serve_post("/hook", rec.handle) as rec.url:
        with allow_egress(stack, rec.url):  # the customer's app, on loopback here
            yield rec


async def test_connection_lifecycle_sends_signed_auth_webhooks(stack: Stack, receiver: Receiver) -> None:
    gh = await setup_github(stack)
    config = {"base_url": stack.provider_url, "token_url": f"{stack.provider_url}/login/oauth/access_token"}
    async with stack.api(gh.key) as api:
        env = (await api.update_environment(webhook_url=receiver.url, webhook_secret="whsec-auth"))["name"]
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret,
                                     authorization_url=f"{stack.provider_url}/login/oauth/authorize",
                                     token_url=config["token_url"])
        token = stack.demo.issue_token()
        creds = {"type": "OAUTH2", "access_token": token["access_token"], "refresh_token": token["refresh_token"]}
        await api.create_connection("github", "lifecycle", creds, connection_config=config,
                                    metadata={"repo": gh.repo})
        await api.create_connection("github", "lifecycle", {**creds, "refresh_token": "ghr_unknown"},
                                    connection_config=config, metadata={"repo": gh.repo})
        # a refresh the provider refuses
        await api.request("GET", "/connections/lifecycle", ok=(400,),
                          params={"provider_config_key": "github", "force_refresh": "true"})
        # an OAuth flow the user declines: the connection is never made
        session = await api.create_connect_session(allowed_integrations=["github"], connection_id="declined")
        stack.demo.deny_next_authorization = True
        async with aiohttp.ClientSession() as browser:
            async with browser.get(session["connect_url"], allow_redirects=False) as resp:
                to_provider = resp.headers["Location"]
            async with browser.get(to_provider, allow_redirects=False) as resp:
                callback = resp.headers["Location"]
            async with browser.get(callback) as resp:
                assert resp.status == 400
        await api.delete_connection("github", "lifecycle")

        async def all_sent() -> list[dict[str, Any]]:
            got = receiver.auth()
            assert len(got) == 5, got
            return got
        sent = await eventually(all_sent, timeout=30)
    by_op = {(b["connectionId"], b["operation"], b["success"]): b for b in sent}
    assert set(by_op) == {("lifecycle", "creation", True), ("lifecycle", "override", True),
                          ("lifecycle", "refresh", False), ("declined", "creation", False),
                          ("lifecycle", "deletion", True)}
    created = by_op[("lifecycle", "creation", True)]
    assert created == {"from": "nango", "type": "auth", "connectionId": "lifecycle", "providerConfigKey": "github",
                       "authMode": "OAUTH2", "provider": "github", "environment": env, "operation": "creation",
                       "success": True}
    refused = by_op[("lifecycle", "refresh", False)]["error"]
    assert refused["type"] == "refresh_token_external_error" and "bad_refresh_token" in refused["description"]
    assert by_op[("declined", "creation", False)]["error"]["type"] == "authorization_failed"

    # the customer's backend verifies them with Nango's own client
    if shutil.which("node") and shutil.which("npm"):
        await _install()
        deliveries = list(receiver.received)  # sync results too (the connection's first run), signed alike
        code, out, err = await run_node("node", "-e", VERIFY, timeout=60, env={
            "SIGNING_KEY": "whsec-auth", "DELIVERIES": json.dumps(deliveries)})
        assert code == 0, err
        assert json.loads(out) == [True] * len(deliveries)
        forged = [(deliveries[0][0].replace('"success":true', '"success":false'), deliveries[0][1])]
        code, out, err = await run_node("node", "-e", VERIFY, timeout=60, env={
            "SIGNING_KEY": "whsec-auth", "DELIVERIES": json.dumps(forged)})
        assert json.loads(out) == [False]

    # every attempt is on the dashboard's webhooks page
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await http.post(f"{stack.api_url}/dashboard/login", data={"secret": gh.key, "next": "/dashboard/"})
        async with http.get(f"{stack.api_url}/dashboard/webhooks") as resp:
            page = await resp.text()
    assert page.count(urlsplit(receiver.url).path) >= 5 and "deletion · success" in page
    assert "refresh · failure" in page


async def test_the_environment_switches_turn_auth_webhooks_off(stack: Stack, receiver: Receiver) -> None:
    gh = await setup_github(stack)
    async with stack.api(gh.key) as api:
        settings = await api.update_environment(webhook_url=receiver.url, on_auth_creation=False)
        assert settings["on_auth_creation"] is False and settings["on_auth_refresh_error"] is True
        await api.create_connection("github", "quiet", {"type": "API_KEY", "apiKey": "k"},
                                    connection_config={"base_url": stack.provider_url})
        await api.delete_connection("github", "quiet")
        await api.update_environment(on_auth_creation=True)
        await api.create_connection("github", "loud", {"type": "API_KEY", "apiKey": "k"},
                                    connection_config={"base_url": stack.provider_url})

        async def loud_sent() -> None:
            assert [b["connectionId"] for b in receiver.auth()] == ["loud"]
        await eventually(loud_sent, timeout=30)
