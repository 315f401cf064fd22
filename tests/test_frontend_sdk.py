"""Nango's own frontend SDK, `@nangohq/frontend` (pinned in tests/node/package.json), in Debian's chromium:
a page on another origin, with only a connect session token from its backend, connects an API-key integration
(the SDK's fetch, answered with CORS) and an OAuth2 integration (the SDK's popup and WebSocket), and the
connections appear in `GET /connections` with the session's end user and tags."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import GithubSetup, Stack, serve, setup_github
from tests.test_node_client import NODE_DIR, _install

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="Node.js (npm) is not installed: @nangohq/frontend cannot be fetched")

PAGE = """<!doctype html><html><head><title>customer app</title></head><body>
<script type="module">
import Nango from '/sdk/index.js';
window.connect = async (host, token, integration, credentials) => {
  const nango = new Nango({ host, connectSessionToken: token });
  try {
    return await nango.auth(integration, credentials ? { credentials } : {});
  } catch (e) {
    return { error: e.type || 'error', message: e.message };
  }
};
window.events = [];
window.openUI = (host, token) => {
  const nango = new Nango({ host, connectSessionToken: token });
  nango.openConnectUI({ baseURL: host + '/connect/ui', apiURL: host, onEvent: (e) => window.events.push(e) });
};
window.ready = true;
</script></body></html>"""


@pytest.fixture
async def customer_page() -> Any:
    """The customer's web page, on its own origin, loading the SDK's ES modules as they ship on npm."""
    await _install()
    dist = NODE_DIR / "node_modules" / "@nangohq" / "frontend" / "dist"
    app = web.Application()
    app.router.add_get("/", lambda _r: web.Response(text=PAGE, content_type="text/html"))
    app.router.add_static("/sdk/", dist)
    async with serve(app) as base:
        yield base + "/"


async def _oauth_github(stack: Stack) -> GithubSetup:
    """The example integration with the demo provider's OAuth app."""
    gh = await setup_github(stack)
    async with stack.api(gh.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret,
                                     authorization_url=f"{stack.provider_url}/login/oauth/authorize",
                                     token_url=f"{stack.provider_url}/login/oauth/access_token")
    return gh


async def test_nangos_frontend_sdk_connects_api_key_and_oauth2(stack: Stack, browser: Any, customer_page: str,
                                                               tmp_path: Path) -> None:
    gh = await _oauth_github(stack)
    async with stack.api(gh.key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-crm", "display_name": "Acme CRM", "auth_mode": "API_KEY", "base_url": stack.provider_url,
            "api_key_header": "X-Api-Key", "api_key_template": "${apiKey}"})
        await api.create_integration("acme", "acme-crm")

        async def session() -> str:
            made = await api.request("POST", "/connect/sessions", json={
                "end_user": {"id": "u-42", "email": "grace@example.com"}, "tags": {"plan": "team"},
                "allowed_integrations": ["github", "acme"]})
            return str(made["data"]["token"])

        page = await (await browser.new_context()).new_page()
        await page.goto(customer_page)
        await page.wait_for_function("window.ready === true")
        keyed = await page.evaluate("([h, t]) => window.connect(h, t, 'acme', { apiKey: 'k-123' })",
                                    [stack.api_url, await session()])
        assert keyed.get("providerConfigKey") == "acme" and keyed.get("connectionId"), keyed

        # OAuth2: the SDK opens a popup on our connect URL and learns the outcome over its WebSocket
        token = await session()
        async with page.context.expect_page() as popup_info:
            pending = page.evaluate("([h, t]) => window.connect(h, t, 'github')", [stack.api_url, token])
            oauthed = await pending
        popup = await popup_info.value
        assert oauthed.get("providerConfigKey") == "github" and oauthed.get("connectionId"), oauthed
        from playwright.async_api import Error as PlaywrightError

        if not popup.is_closed():  # the callback's page closes the popup itself
            with contextlib.suppress(PlaywrightError):  # (closed between the two calls)
                await popup.wait_for_event("close", timeout=10_000)
        assert popup.is_closed()

        # a declined authorization is an error the SDK raises, with our error code
        stack.demo.deny_next_authorization = True
        declined = await page.evaluate("([h, t]) => window.connect(h, t, 'github')", [stack.api_url, await session()])
        assert declined["error"] == "authorization_failed", declined

        found = {c["connection_id"]: c for c in await api.list_connections()}
    for made in (keyed, oauthed):
        conn = found[made["connectionId"]]
        assert conn["end_user"]["id"] == "u-42" and conn["tags"]["plan"] == "team", json.dumps(conn)
        assert conn["tags"]["end_user_email"] == "grace@example.com"
    async with stack.api(gh.key) as api:
        creds = (await api.get_connection("acme", keyed["connectionId"]))["credentials"]
        assert creds == {"type": "API_KEY", "apiKey": "k-123"}
        oauth_creds = (await api.get_connection("github", oauthed["connectionId"]))["credentials"]
        assert stack.demo.token_valid(oauth_creds["access_token"])


async def test_the_sdks_connect_ui_pointed_at_our_connect_page(stack: Stack, browser: Any, customer_page: str) -> None:
    """openConnectUI({baseURL}) loads our connect page in its iframe: the page says ready, gets the session token by
    postMessage, lists the session's integrations, connects an API key and an OAuth2 account, and tells the
    customer's page; its close button closes the iframe."""
    gh = await _oauth_github(stack)
    async with stack.api(gh.key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-crm", "display_name": "Acme CRM", "auth_mode": "API_KEY", "base_url": stack.provider_url})
        await api.create_integration("acme", "acme-crm", display_name="Acme CRM")
        await api.create_integration("hidden", "acme-crm", display_name="Not in this session")
        # the session endpoints a page may call without the secret key stop at the session itself
        async with api.session.post(f"{stack.api_url}/connect/sessions", json={}) as resp:
            assert resp.status == 401
        token = (await api.request("POST", "/connect/sessions", json={
            "end_user": {"id": "u-9"}, "allowed_integrations": ["acme", "github"]}))["data"]["token"]

        page = await (await browser.new_context()).new_page()
        await page.goto(customer_page)
        await page.wait_for_function("window.ready === true")
        await page.evaluate("([h, t]) => window.openUI(h, t)", [stack.api_url, token])
        frame = page.frame_locator("#connect-ui")
        await frame.locator("button[data-integration=acme]").click()
        assert await frame.locator("button[data-integration=hidden]").count() == 0
        await frame.locator("#f-apiKey").fill("k-ui")
        await frame.locator("button[type=submit]").click()
        await page.wait_for_function("window.events.some(e => e.type === 'connect')")
        events = await page.evaluate("window.events")
        assert [e["type"] for e in events][:2] == ["ready", "connect"], events
        keyed = events[1]["payload"]
        assert keyed["providerConfigKey"] == "acme" and keyed["connectionId"]

        # OAuth2 from the same page: its popup, then the page tells the customer's page
        await page.evaluate("window.events = []; document.getElementById('connect-ui').remove()")
        await page.evaluate("([h, t]) => window.openUI(h, t)", [stack.api_url, token])
        frame = page.frame_locator("#connect-ui")
        async with page.context.expect_page():
            await frame.locator("button[data-integration=github]").click()
        await page.wait_for_function("window.events.some(e => e.type === 'connect')")
        oauthed = next(e for e in await page.evaluate("window.events") if e["type"] == "connect")["payload"]
        assert oauthed["providerConfigKey"] == "github"

        await frame.locator("#close").click()
        await page.wait_for_function("document.getElementById('connect-ui') === null")

        found = {c["connection_id"]: c for c in await api.list_connections()}
    assert found[keyed["connectionId"]]["end_user"]["id"] == "u-9"
    assert found[oauthed["connectionId"]]["end_user"]["id"] == "u-9"
    async with stack.api(gh.key) as api:
        assert (await api.get_connection("acme", keyed["connectionId"]))["credentials"]["apiKey"] == "k-ui"
