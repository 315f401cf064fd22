"""Nango's own frontend SDK, `@nangohq/frontend` (pinned in tests/node/package.json), in Debian's chromium:
a page on another origin, with only a connect session token from its backend, connects an API-key integration
(the SDK's fetch, answered with CORS) and an OAuth2 integration (the SDK's popup and WebSocket), and the
connections appear in `GET /connections` with the session's end user and tags. Our connect page (`/connect/ui/`,
in openConnectUI's iframe or opened from a session's connect_link) in every mode: TBA, JWT (a PEM pasted, a
malformed one refused on the page), client credentials, OAuth with connection config asked first; and the
`lang` / `theme` the SDK puts on its URL."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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
window.openUI = (host, token, options) => {
  const nango = new Nango({ host, connectSessionToken: token });
  nango.openConnectUI({ baseURL: host + '/connect/ui', apiURL: host, onEvent: (e) => window.events.push(e),
                        ...(options || {}) });
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


async def _open_ui(browser: Any, customer_page: str, api_url: str, token: str, *, color_scheme: str = "light",
                   **options: str) -> tuple[Any, Any]:
    """The customer's page with openConnectUI's iframe on our connect page: (page, the iframe's locator)."""
    page = await (await browser.new_context(color_scheme=color_scheme)).new_page()
    await page.goto(customer_page)
    await page.wait_for_function("window.ready === true")
    await page.evaluate("([h, t, o]) => window.openUI(h, t, o)", [api_url, token, options])
    return page, page.frame_locator("#connect-ui")


async def _connected(page: Any) -> dict[str, Any]:
    """The payload of the connect event the page posted to the customer's page."""
    await page.wait_for_function("window.events.some(e => e.type === 'connect' || e.type === 'error')")
    events = await page.evaluate("window.events")
    assert any(e["type"] == "connect" for e in events), events
    return dict(next(e for e in events if e["type"] == "connect")["payload"])


async def test_connect_page_tba_asks_account_and_token(stack: Stack, browser: Any, customer_page: str) -> None:
    """A TBA integration (NetSuite-like): the session tells the page the account id and token fields and nothing
    of the integration's consumer secret; the page asks for them and the connection has them."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-erp", "display_name": "Acme ERP", "auth_mode": "TBA",
            "base_url": stack.provider_url + "/erp/${connectionConfig.accountId}",
            "connection_config": {"accountId": "the account id (1234567-sb1)"}})
        await api.create_integration("erp", "acme-erp", client_id="consumer-id",
                                     client_secret="consumer-secret-never-shown")
        token = (await api.request("POST", "/connect/sessions", json={
            "end_user": {"id": "u-tba"}, "allowed_integrations": ["erp"]}))["data"]["token"]
        async with api.session.get(f"{stack.api_url}/connect/session",
                                   headers={"Authorization": f"Bearer {token}"}) as resp:
            raw = await resp.text()
        shown = json.loads(raw)["data"]["integrations"][0]
        assert shown["connection_config"] == {"accountId": "the account id (1234567-sb1)"}
        assert set(shown["credentials"]) == {"token_id", "token_secret"}
        assert "consumer-secret-never-shown" not in raw and "consumer-id" not in raw

        page, frame = await _open_ui(browser, customer_page, stack.api_url, token)
        await frame.locator("button[data-integration=erp]").click()
        await frame.locator("#p-accountId").fill("1234567-sb1")
        await frame.locator("#f-token_id").fill("tid-42")
        assert await frame.locator("#f-token_secret").get_attribute("type") == "password"
        await frame.locator("#f-token_secret").fill("tsecret-42")
        await frame.locator("button[type=submit]").click()
        made = await _connected(page)
        conn = await api.get_connection("erp", made["connectionId"])
    assert made["providerConfigKey"] == "erp"
    assert conn["credentials"]["type"] == "TBA" and conn["credentials"]["token_id"] == "tid-42"
    assert conn["credentials"]["token_secret"] == "tsecret-42"
    assert conn["connection_config"]["accountId"] == "1234567-sb1"
    assert conn["end_user"]["id"] == "u-tba"


def _rsa_pem() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


async def _jwt_integration(stack: Stack) -> tuple[str, str]:
    """An environment with a JWT provider that signs RS256 with the connection's PEM: (secret key, session token)."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-signed", "display_name": "Acme Signed", "auth_mode": "JWT",
            "base_url": stack.provider_url,
            "credentials": {"issuerId": "the issuer id", "privateKeyId": "the key's id",
                            "privateKey": "the private key (PEM)"},
            "token": {"signing_key": "${credentials.privateKey}", "header": {"alg": "RS256",
                                                                              "kid": "${credentials.privateKeyId}"},
                      "payload": {"iss": "${credentials.issuerId}", "aud": "acme"}}})
        await api.create_integration("signed", "acme-signed")
        made = await api.request("POST", "/connect/sessions", json={"end_user": {"id": "u-jwt"},
                                                                    "allowed_integrations": ["signed"]})
    return key, str(made["data"]["token"])


async def _fill_jwt(frame: Any, pem: str) -> None:
    await frame.locator("button[data-integration=signed]").click()
    await frame.locator("#f-issuerId").fill("issuer-7")
    await frame.locator("#f-privateKeyId").fill("kid-7")
    assert await frame.locator("#f-privateKey").evaluate("e => e.tagName") == "TEXTAREA"
    await frame.locator("#f-privateKey").fill(pem)
    await frame.locator("button[type=submit]").click()


async def test_connect_page_jwt_signs_with_the_pasted_key(stack: Stack, browser: Any, customer_page: str) -> None:
    """A JWT integration: the page asks for the provider's credential fields (the PEM in a textarea) and the
    connection's token is an RS256 JWT that the matching public key verifies."""
    key, token = await _jwt_integration(stack)
    pem, public = _rsa_pem()
    page, frame = await _open_ui(browser, customer_page, stack.api_url, token)
    await _fill_jwt(frame, pem)
    made = await _connected(page)
    async with stack.api(key) as api:
        creds = (await api.get_connection("signed", made["connectionId"]))["credentials"]
    assert creds["type"] == "JWT"
    claims = jwt.decode(creds["token"], public, algorithms=["RS256"], audience="acme")
    assert claims["iss"] == "issuer-7"
    assert jwt.get_unverified_header(creds["token"])["kid"] == "kid-7"


async def test_connect_page_shows_a_malformed_key_refused(stack: Stack, browser: Any) -> None:
    """A PEM that cannot sign: the page, opened directly from the session's connect_link, shows the API's error
    naming the field, and no connection is made."""
    key, _token = await _jwt_integration(stack)
    async with stack.api(key) as api:
        link = (await api.request("POST", "/connect/sessions", json={
            "end_user": {"id": "u-jwt"}, "allowed_integrations": ["signed"]}))["data"]["connect_link"]
    page = await (await browser.new_context()).new_page()
    await page.goto(link)
    await _fill_jwt(page, "-----BEGIN PRIVATE KEY-----\nnot a key at all\n-----END PRIVATE KEY-----")
    error = page.locator("#error")
    await error.filter(has_text="credentials.privateKey").wait_for(timeout=15_000)
    assert "RS256" in await error.inner_text()
    async with stack.api(key) as api:
        assert await api.list_connections(integration_id="signed") == []


async def test_connect_page_in_french_and_dark(stack: Stack, browser: Any, customer_page: str) -> None:
    """openConnectUI({lang: 'fr', themeOverride: 'dark'}) puts lang and theme on the iframe URL: the page speaks
    French and draws its dark palette; without a theme it follows the browser's colour scheme."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-crm", "display_name": "Acme CRM", "auth_mode": "API_KEY", "base_url": stack.provider_url})
        await api.create_integration("acme", "acme-crm", display_name="Acme CRM")

        async def session() -> str:
            made = await api.request("POST", "/connect/sessions", json={"end_user": {"id": "u-fr"}})
            return str(made["data"]["token"])

        _page, frame = await _open_ui(browser, customer_page, stack.api_url, await session(), lang="fr",
                                      themeOverride="dark")
        await frame.locator("button[data-integration=acme]").wait_for()
        root = frame.locator("html")
        assert await root.get_attribute("lang") == "fr"
        assert await root.get_attribute("data-theme") == "dark"
        assert await frame.locator("#title").inner_text() == "Connecter un compte"
        background = await frame.locator("main").evaluate("e => getComputedStyle(e).backgroundColor")
        assert background == "rgb(28, 33, 48)", background   # the dark card, not white
        await frame.locator("button[data-integration=acme]").click()
        assert await frame.locator("label[for=f-apiKey]").inner_text() == "Cl\u00e9 d\u2019API"
        assert await frame.locator("button[type=submit]").inner_text() == "Connecter"

        # no theme: the browser's dark preference; an unknown language: English
        _page, frame = await _open_ui(browser, customer_page, stack.api_url, await session(), color_scheme="dark",
                                      lang="xx")
        await frame.locator("button[data-integration=acme]").wait_for()
        assert await frame.locator("html").get_attribute("data-theme") == "dark"
        assert await frame.locator("html").get_attribute("lang") == "en"
        assert await frame.locator("#title").inner_text() == "Connect an account"


async def test_connect_page_asks_connection_config_before_the_oauth_popup(stack: Stack, browser: Any,
                                                                          customer_page: str) -> None:
    """An OAuth provider whose URLs need a connection-config value: the page asks for it first, the popup carries
    it as params[team], and the connection keeps it."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-teams", "display_name": "Acme Teams", "auth_mode": "OAUTH2",
            "authorization_url": stack.provider_url + "/login/oauth/authorize?team=${connectionConfig.team}",
            "token_url": stack.provider_url + "/login/oauth/access_token", "base_url": stack.provider_url,
            "connection_config": {"team": "your team's slug"}})
        await api.create_integration("teams", "acme-teams", client_id=stack.demo.client_id,
                                     client_secret=stack.demo.client_secret)
        token = (await api.request("POST", "/connect/sessions", json={"end_user": {"id": "u-team"}}))["data"]["token"]
        page, frame = await _open_ui(browser, customer_page, stack.api_url, token)
        await frame.locator("button[data-integration=teams]").click()
        await frame.locator("#p-team").fill("blue")
        async with page.context.expect_page():
            await frame.locator("button[type=submit]").click()
        made = await _connected(page)
        conn = await api.get_connection("teams", made["connectionId"])
    assert conn["connection_config"]["team"] == "blue"
    assert stack.demo.token_valid(conn["credentials"]["access_token"])


async def test_connect_page_client_credentials(stack: Stack, browser: Any, customer_page: str) -> None:
    """OAUTH2_CC: the page asks for the client id and secret (a password input) and a token is minted at once."""
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.request("POST", "/providers", json={
            "name": "acme-m2m", "display_name": "Acme M2M", "auth_mode": "OAUTH2_CC",
            "token_url": stack.provider_url + "/login/oauth/access_token", "base_url": stack.provider_url})
        await api.create_integration("m2m", "acme-m2m")
        token = (await api.request("POST", "/connect/sessions", json={"end_user": {"id": "u-m2m"}}))["data"]["token"]
        page, frame = await _open_ui(browser, customer_page, stack.api_url, token)
        await frame.locator("button[data-integration=m2m]").click()
        await frame.locator("#f-client_id").fill(stack.demo.client_id)
        assert await frame.locator("#f-client_secret").get_attribute("type") == "password"
        await frame.locator("#f-client_secret").fill(stack.demo.client_secret)
        await frame.locator("button[type=submit]").click()
        made = await _connected(page)
        conn = await api.get_connection("m2m", made["connectionId"])
    assert conn["credentials"]["type"] == "OAUTH2_CC"
    assert stack.demo.token_valid(conn["credentials"]["token"])
