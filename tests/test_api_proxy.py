"""`/proxy/*` through the real stack: credentials injected, headers, retries, pass-through."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from orchestrator.client import ApiError
from tests.conftest import Stack, allow_egress, setup_github


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An upstream that answers with what it received (and a gzip body, and odd headers)."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"method": request.method, "path": request.path, "query": request.rel_url.raw_query_string,
                     "headers": {str(k): v for k, v in request.headers.items()}, "body": body})
        payload = orjson.dumps({"path": request.path, "len": len(body)})
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(payload), headers={
                "Content-Encoding": "gzip", "Content-Type": "application/json"})
        return web.Response(body=payload, status=207 if request.path == "/multi" else 200,
                            headers={"Content-Type": "application/json", "X-Upstream": "yes",
                                     "Keep-Alive": "timeout=5"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_proxy_reaches_the_provider_with_the_connections_credentials(stack: Stack) -> None:
    gh = await setup_github(stack, issues=3)
    async with stack.api(gh.key) as api:
        user = await api.proxy("GET", "/user", integration="github", connection_id="conn-1")
        assert user.status == 200 and user.json()["login"]
        assert user.headers["X-GitHub-Request-Id"]  # upstream headers pass through
        page = await api.proxy("GET", f"repos/{gh.repo}/issues", integration="github", connection_id="conn-1",
                               params={"per_page": "2", "state": "all"})
        assert page.status == 200 and len(page.json()) == 2 and 'rel="next"' in page.headers["Link"]
        created = await api.proxy("POST", f"/repos/{gh.repo}/issues", integration="github", connection_id="conn-1",
                                  data={"title": "through the proxy"})
        assert created.status == 201 and stack.demo.get_issue(gh.repo, 4)["title"] == "through the proxy"
        missing = await api.proxy("GET", f"/repos/{gh.repo}/issues/999", integration="github",
                                  connection_id="conn-1")
        assert missing.status == 404 and missing.json()["message"] == "Not Found"  # GitHub's body, as is

        stack.demo.fail_next(2, 503, path_prefix="/user")
        assert (await api.proxy("GET", "/user", integration="github", connection_id="conn-1", retries=3)).status == 200
        stack.demo.fail_next(1, 503, path_prefix="/user")
        assert (await api.proxy("GET", "/user", integration="github", connection_id="conn-1")).status == 503
        stack.demo.fail_next(1, 409, path_prefix="/user")
        ok = await api.proxy("GET", "/user", integration="github", connection_id="conn-1", retries=1, retry_on=[409])
        assert ok.status == 200

        for headers, code in (({}, "missing_headers"), ({"Connection-Id": "ghost", "Provider-Config-Key": "github"},
                                                        "unknown_connection"),
                              ({"Connection-Id": "conn-1", "Provider-Config-Key": "github", "Retries": "x"},
                               "invalid_headers")):
            err = await api.request("GET", "/proxy/user", headers=headers, ok=(400, 404))
            assert err["error"]["code"] == code
        with pytest.raises(ApiError) as exc:  # loopback, not listed: the egress policy refuses it
            await api.proxy("GET", "/user", integration="github", connection_id="conn-1",
                            base_url_override="http://127.0.0.1:1")
        assert exc.value.status == 403 and exc.value.code == "egress_refused"
        assert "127.0.0.1:1" in exc.value.message and "EGRESS_ALLOW" in exc.value.message
        with allow_egress(stack, "http://127.0.0.1:1"), pytest.raises(ApiError) as exc:
            await api.proxy("GET", "/user", integration="github", connection_id="conn-1",
                            base_url_override="http://127.0.0.1:1")
        assert exc.value.status == 502 and exc.value.code == "upstream_unreachable"


async def test_proxy_headers_query_body_and_response_pass_through(stack: Stack, echo: tuple[str, list]) -> None:
    url, seen = echo
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api, allow_egress(stack, url):
        # "keyed" talks to the echo server as its provider host; conn-1 reaches it through an override
        await api.create_connection("github", "keyed", {"type": "API_KEY", "apiKey": "k-999"},
                                    connection_config={"base_url": url})
        body = b'{"raw": "bytes \xc3\xa9"}'
        res = await api.proxy("PATCH", "/things/1", integration="github", connection_id="conn-1", data=body,
                              params="a=1&b=x%20y&c=%3D", base_url_override=url,
                              headers={"X-Foo": "bar", "Content-Type": "application/merge-patch+json"})
        assert res.status == 200 and res.headers["X-Upstream"] == "yes"
        assert "Keep-Alive" not in res.headers  # hop-by-hop
        got = seen[-1]
        assert got["method"] == "PATCH" and got["path"] == "/things/1" and got["body"] == body
        assert got["query"] == "a=1&b=x%20y&c=%3D"
        assert got["headers"]["X-Foo"] == "bar" and got["headers"]["Content-Type"] == "application/merge-patch+json"
        assert "Authorization" not in got["headers"]  # not conn-1's provider host: no credentials go there
        assert gh.key not in orjson.dumps(got["headers"]).decode()
        assert not any(k.lower().startswith("nango-proxy-") or k.lower() in ("connection-id", "provider-config-key")
                       for k in got["headers"])

        res = await api.proxy("GET", "/gzip", integration="github", connection_id="conn-1", base_url_override=url)
        assert res.json() == {"path": "/gzip", "len": 0} and "Content-Encoding" not in res.headers
        res = await api.proxy("DELETE", "/multi", integration="github", connection_id="keyed", base_url_override=url)
        assert res.status == 207 and seen[-1]["headers"]["Authorization"] == "Bearer k-999"
