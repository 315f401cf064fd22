"""Odd bytes and out-of-range numbers in a request get a 4xx that names what was wrong, never a 500, and change
nothing stored. Through the real stack; raw bytes go over a plain socket, as no HTTP client sends them."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import orjson
from aiohttp import web

from orchestrator.authoring.compile import compile_project
from orchestrator.client import NangoClient
from tests.conftest import EXAMPLES, Stack, allow_egress, serve, setup_github
from tests.test_auth_modes import _follow, demo_oauth1
from tests.test_environments import ADMIN_KEY, admin_url  # noqa: F401  (the API with the admin routes on)


async def _raw(base_url: str, method: str, path: str, headers: bytes) -> tuple[int, dict[str, Any]]:
    """One request with header bytes as given (invalid UTF-8 included): its status and JSON body (the Location
    header's value under 'location' for a redirect)."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n".encode()
                 + headers + b"\r\n")
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if status in (301, 302, 303):
        lines = head.decode().split("\r\n")
        return status, {"location": next(x.split(":", 1)[1].strip() for x in lines
                                         if x.lower().startswith("location:"))}
    return status, orjson.loads(body)


async def test_a_secret_key_that_is_not_utf8_is_an_unknown_key(
        stack: Stack, admin_url: str) -> None:  # noqa: F811
    for path in ("/connections", "/environment", "/oauth/connect/github"):
        for key in (b"sk_\xff\xfe", "sk_é".encode()):
            status, body = await _raw(stack.api_url, "GET", path, b"Authorization: Bearer " + key + b"\r\n")
            assert (status, body["error"]["code"]) == (401, "unknown_account"), (path, key, body)
            assert "secret key is not valid" in body["error"]["message"]
    status, body = await _raw(stack.api_url, "GET", "/connect/session",
                              b"Authorization: Bearer nango_connect_session_\xff\r\n")
    assert (status, body["error"]["code"]) == (401, "invalid_connect_session_token"), body
    status, body = await _raw(admin_url, "GET", "/admin/environments", b"Authorization: Bearer admin-\xff\r\n")
    assert (status, body["error"]["code"]) == (401, "unknown_account"), body
    for cookie in (b"\xff.\xfe", b"a\xff.b"):  # a dashboard session cookie: as no session, to the sign-in page
        status, body = await _raw(stack.api_url, "GET", "/dashboard/", b"Cookie: nango_dashboard=" + cookie + b"\r\n")
        assert status == 302 and body["location"].startswith("/dashboard/login"), (status, body)


async def test_a_webhook_signature_that_is_not_ascii_is_a_wrong_signature(stack: Stack) -> None:
    env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.create_integration("github", "github", webhook_secret="whsec-odd")
    path = f"/webhook/{env}/github"
    for signature in ("sha256=é".encode(), b"sha256=\xff"):
        status, body = await _raw(stack.api_url, "POST", path, b"X-Hub-Signature-256: " + signature + b"\r\n")
        assert (status, body["error"]["code"]) == (401, "invalid_signature"), body
        assert "X-Hub-Signature-256 does not match" in body["error"]["message"]
    async with stack.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM webhook_payloads w JOIN environments e"
                                   " ON e.id = w.environment_id WHERE e.name = $1", env) == 0


async def test_an_oauth1_callback_token_that_is_not_ascii_is_not_the_flows_token(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await demo_oauth1(stack, api)
        session = await api.create_connect_session(allowed_integrations=["o1"], connection_id="odd")
        async with aiohttp.ClientSession() as browser:
            callback = await _follow(browser, await _follow(browser, session["connect_url"]))
            parts = urlsplit(callback)
            query = [(k, "é" if k == "oauth_token" else v) for k, v in parse_qsl(parts.query)]
            async with browser.get(urlunsplit(parts._replace(query=urlencode(query)))) as resp:
                assert resp.status == 400, await resp.text()
                error = (await resp.json())["error"]
        assert error["code"] == "invalid_callback" and "oauth_token is not the one" in error["message"]
        assert await api.list_connections() == []


async def test_a_number_written_with_a_superscript_digit_is_refused_by_name(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:  # '²'.isdigit() is True, int('²') raises
        for path, params, headers, named in (
                ("/logs", {"limit": "²"}, None, "limit must be an integer"),
                ("/jobs", {"limit": "²"}, None, "limit must be an integer"),
                ("/jobs/²", None, None, "a job id is a number or a UUID"),
                ("/integrations/github/functions", {"page": "²"}, None, "page must be an integer"),
                ("/proxy/user", None, {"Connection-Id": "c", "Provider-Config-Key": "github", "Retry-On": "500,²"},
                 "Retry-On takes HTTP statuses")):
            answer = await api.request("GET", path, params=params, headers=headers, ok=(400,))
            assert named in answer["error"]["message"], (path, answer)


async def test_a_base_url_override_that_is_no_url_is_refused_by_name(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.create_integration("github", "github")
        await api.create_connection("github", "c", {"type": "API_KEY", "apiKey": "k"})
        for override, why in (("https://x:99999", "Port out of range"), ("https://[::1", "Invalid IPv6 URL"),
                              ("https://:8080", "host is required")):
            answer = await api.request("GET", "/proxy/user", ok=(400,), headers={
                "Connection-Id": "c", "Provider-Config-Key": "github", "Base-Url-Override": override})
            error = answer["error"]
            assert error["code"] == "invalid_headers", error
            assert f"Base-Url-Override must be an http(s) URL, got {override!r}" in error["message"], error
            assert why in error["message"], error


async def test_an_expiry_out_of_range_is_refused_by_name(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.create_integration("github", "github")
        for at in ("0001-01-01T00:00:00Z", "0001-01-01T00:10:00+01:00", "0001-01-01T00:00:00",
                   "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z"):
            for body in ({"credentials": {"type": "OAUTH2", "access_token": "t", "expires_at": at}},
                         {"access_token": "t", "expires_at": at}):
                answer = await api.request("POST", "/connections", ok=(400,), json={
                    "provider_config_key": "github", "connection_id": "c", **body})
                error = answer["error"]
                assert error["code"] == "invalid_body" and "expires_at" in error["message"], (at, error)
                assert "must be a time from 1970 to 9999 in UTC" in error["message"], (at, error)
        assert await api.list_connections() == []
        made = await api.create_connection("github", "c", {"type": "OAUTH2", "access_token": "t",
                                                           "expires_at": "9999-12-31T23:59:59Z"})
        assert made["credentials"]["expires_at"] == "9999-12-31T23:59:59.000Z"


async def test_a_frequency_of_millions_of_years_is_an_invalid_schedule(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    body = {"sync_name": "issues", "provider_config_key": "github", "connection_id": "conn-1"}
    status_params = {"syncs": "issues", "provider_config_key": "github", "connection_id": "conn-1"}
    async with stack.api(gh.key) as api:
        answer = await api.request("PUT", "/sync/update-connection-frequency", ok=(400,),
                                   json={**body, "frequency": "every 9999999 years"})
        assert answer["error"]["code"] == "invalid_schedule", answer
        assert "'every 9999999 years': longer than the 10-year maximum" in answer["error"]["message"]
        status = await api.request("GET", "/sync/status", params=status_params)
        assert status["syncs"][0]["frequency"] == "every 5 minutes"


async def test_a_grace_period_of_1e300_seconds_is_refused_and_the_key_kept(
        stack: Stack, admin_url: str) -> None:  # noqa: F811
    env, key = await stack.new_environment()
    async with stack.api(key) as api:
        answer = await api.request("POST", "/environment/rotate-key", json={"grace_period_s": 1e300}, ok=(400,))
        assert "grace period must be from 0 to 2592000 seconds (30 days), got 1e+300" in answer["error"]["message"]
    async with NangoClient(admin_url, ADMIN_KEY) as admin:
        answer = await admin.request("POST", f"/admin/environments/{env}/rotate-key", json={"grace_period_s": 1e300},
                                     ok=(400,))
        assert "grace period must be from 0 to 2592000 seconds" in answer["error"]["message"], answer
    async with stack.api(key) as api:
        assert (await api.request("GET", "/environment"))["name"] == env  # the key was not rotated


async def test_a_token_that_expires_after_year_9999_has_no_expiry(stack: Stack) -> None:
    """A provider answering expires_in 1e13 (past year 9999): the token is kept as one without a usable expiry,
    from the authorization code and from a refresh alike."""
    issued: list[str] = []

    async def token(request: web.Request) -> web.Response:
        issued.append(f"tok-{len(issued)}")
        return web.json_response({"access_token": issued[-1], "refresh_token": "r", "expires_in": 1e13})

    app = web.Application()
    app.router.add_post("/token", token)
    _env, key = await stack.new_environment()
    async with serve(app) as base, allow_egress(stack, base), stack.api(key) as api:
        await api.create_integration("gh", "github", client_id="cid", client_secret="cs",
                                     authorization_url=f"{base}/authorize", token_url=f"{base}/token")
        session = await api.create_connect_session(allowed_integrations=["gh"], connection_id="far")
        async with aiohttp.ClientSession() as browser:
            state = parse_qs(urlsplit(await _follow(browser, session["connect_url"])).query)["state"][0]
            async with browser.get(f"{stack.api_url}/oauth/callback", params={"code": "c", "state": state}) as resp:
                assert resp.status == 200, await resp.text()
        creds = (await api.get_connection("gh", "far"))["credentials"]
        assert (creds["access_token"], creds["expires_at"]) == ("tok-0", None)
        creds = (await api.get_connection("gh", "far", force_refresh=True))["credentials"]
        assert (creds["access_token"], creds["expires_at"]) == ("tok-1", None)


async def test_deploy_options_that_are_not_an_object_are_refused_by_name(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    bundles = await asyncio.to_thread(compile_project, EXAMPLES)
    async with stack.api(key) as api:
        for options in ("0", "[]", "null"):
            form = aiohttp.FormData()
            form.add_field("options", options, content_type="application/json")
            for bundle in bundles:
                form.add_field("bundle", bundle.data, filename=f"{bundle.integration}.zip",
                               content_type="application/zip")
            answer = await api.request("POST", "/deploy", data=form, ok=(400,))
            assert answer["error"]["code"] == "invalid_body", answer
            assert "the 'options' part must be a JSON object like" in answer["error"]["message"], answer
            assert answer["error"]["message"].endswith(f"got {options}"), answer
        assert await api.deploy_history() == [] and await api.list_integrations() == []
