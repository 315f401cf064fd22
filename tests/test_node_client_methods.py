"""Every method of Nango's Node client (`@nangohq/node`, the pinned version) against the live stack: each one either
works (a real call, its answer checked) or gets a 501 whose JSON error names the feature. The method list is the
client's own prototype (tests/node/methods.mjs), so a method a new client version adds fails here until it is
classified. README's client compatibility table says the same."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import Stack, allow_egress, eventually, serve_post, setup_github, wait_for_job
from tests.test_node_client import _install, _run, pytestmark  # noqa: F401 (skipped without Node.js)

Check = Callable[[Any], None]


def _have(value: Any, **expected: Any) -> None:
    assert {k: value.get(k) for k in expected} == expected, value


def _works(gh_repo: str) -> dict[str, Check]:
    """Per method, what its answer must be (the value the client returned)."""
    def ok_status(v: Any) -> None:
        assert v["status"] == 200, v

    return {
        "listProviders": lambda v: _have(next(p for p in v["data"] if p["name"] == "github"), auth_mode="OAUTH2"),
        "getProvider": lambda v: _have(v["data"], name="github"),
        "getProviderTemplates": lambda v: _have(
            {f["name"]: f["type"] for f in v["data"]}, issues="sync", **{"create-issue": "action"}),
        "listIntegrations": lambda v: _have(v["configs"][0], unique_key="github", provider="github"),
        "getIntegration": lambda v: _have(v["data"], unique_key="github"),
        "createIntegration": lambda v: _have(v["data"], unique_key="extra", provider="github", display_name="Extra"),
        "updateIntegration": lambda v: _have(v["data"], unique_key="extra", display_name="Extra, renamed"),
        "deleteIntegration": ok_status,
        "listFunctions": lambda v: (_have(v["data"][0], name="issues", type="sync", returns=["GithubIssue"],
                                          runs="every 5 minutes", enabled=True, source="repo"),
                                    _have(v["pagination"], total=1, page=0, limit=20)),
        "getFunction": lambda v: _have(v["data"], name="issues", type="sync", auto_start=True),
        "getFunctionCode": lambda v: (_have(v, type="sync"), _contains(v["code"], "async def fetch_data(")),
        "listConnections": lambda v: _equal(sorted(c["connection_id"] for c in v["connections"]),
                                            ["conn-1", "conn-2"]),
        "getConnection": lambda v: _have(v["credentials"], type="OAUTH2", access_token="demo-token"),
        "getConnectionDetails": lambda v: (ok_status(v), _have(v["data"], connection_id="conn-1")),
        "patchConnection": lambda v: _have(v, success=True),
        "waitForConnection": lambda v: _have(v, connection_id="conn-1", provider_config_key="github"),
        "getToken": lambda v: _equal(v, "demo-token"),
        "getRawTokenResponse": lambda v: _equal(isinstance(v, dict), True),
        "setMetadata": lambda v: _equal(v["data"]["metadata"], {"repo": gh_repo, "a": 1}),
        "updateMetadata": lambda v: _equal(v["data"]["metadata"], {"b": 2}),
        "getMetadata": lambda v: _equal(v, {"repo": gh_repo, "a": 1, "b": 2}),
        "getScriptsConfig": lambda v: _equal(isinstance(v, list | dict), True),  # another part builds it
        "listRecords": lambda v: _equal(len(v["records"]), 3),
        "syncStatus": lambda v: _have(v["syncs"][0], name="issues", frequency="every 5 minutes"),
        "pauseSync": ok_status,
        "startSync": ok_status,
        "updateSyncConnectionFrequency": lambda v: _equal(v, {"frequency": "every 2h"}),
        "createSyncVariant": lambda v: _have(v, name="issues", variant="v1"),
        "deleteSyncVariant": lambda v: _have(v, success=True),
        "getEnvironmentVariables": lambda v: _equal(v, [{"name": "FROM_PYTHON", "value": "yes"}]),
        "_triggerAction": lambda v: _have(v, title="through _triggerAction"),
        "triggerAction": lambda v: _have(v, title="from node"),
        "triggerActionAsync": lambda v: _equal(v["statusUrl"], f"/action/{v['id']}"),
        "getAsyncActionResult": lambda v: _have(v, title="awaited from node"),
        "proxy": lambda v: (ok_status(v), _equal(len(v["data"]), 2)),
        "get": lambda v: (ok_status(v), _equal(bool(v["data"]["login"]), True)),
        "post": lambda v: (_have(v, status=201), _have(v["data"], title="proxied post")),
        "patch": lambda v: (ok_status(v), _have(v["data"], title="proxied patch")),
        "createConnectSession": lambda v: _contains(v["data"]["token"], "nango_connect_session_"),
        "createReconnectSession": lambda v: _contains(v["data"]["token"], "nango_connect_session_"),
        "pruneRecords": lambda v: _have(v, count=1),
        "triggerSync": lambda v: (ok_status(v), _have(v["data"], success=True)),
        "deleteConnection": ok_status,
        # no request of their own: checked against what the server really sends or expects
        "enrichHeaders": lambda v: _contains(v["Authorization"], "Bearer "),
        "verifyIncomingWebhookRequest": lambda v: _equal(v, {"ours": True, "tampered": False}),
    }


# Nango's proxy verbs the demo provider has no route for: they reach it, and its own 405 (GitHub's error body, not
# our error envelope) comes back unchanged
PROVIDER_405 = ("put", "delete")

# a 501 whose error names the feature
UNSUPPORTED = {
    "createQuickstartIntegration": "quickstart integrations",
    "deleteFunction": "deleting a function",
}

# Nango's deprecated signature (sha256 of key + JSON, open to length extension): never sent here, so the client
# cannot verify our webhooks with it; verifyIncomingWebhookRequest (X-Nango-Hmac-Sha256) does
NOT_SENT = ("verifyWebhookSignature", "_verifyWebhookSignatureImpl")


def _equal(a: Any, b: Any) -> None:
    assert a == b, (a, b)


def _contains(text: str, part: str) -> None:
    assert part in text, text[:300]


async def test_every_method_of_the_node_client_works_or_says_why_not(stack: Stack) -> None:
    await _install()
    gh = await setup_github(stack, issues=3)
    await wait_for_job(stack, gh)
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), {k.lower(): v for k, v in request.headers.items()}))
        return web.Response(text="ok")

    async with serve_post("/hook", hook) as url, allow_egress(stack, url), stack.api(gh.key) as api:
        await api.create_connection("github", "conn-2", {"type": "API_KEY", "apiKey": "k"})
        await api.set_environment_variables({"FROM_PYTHON": "yes"})
        await api.update_environment(webhook_url=url, webhook_secret="whsec-node", notify_on_empty=True)
        await api.trigger_sync("github", ["issues"], "conn-1")
        await wait_for_job(stack, gh, count=2)

        async def delivered() -> None:
            assert received
        await eventually(delivered, timeout=30)
        body, headers = received[0]
        config = {"host": stack.api_url, "key": gh.key, "integration": "github", "connectionId": "conn-1",
                  "secondConnectionId": "conn-2", "repo": gh.repo, "model": "GithubIssue", "endUserId": "u-node",
                  "webhookSecret": "whsec-node", "webhookBody": body.decode(), "webhookHeaders": headers}
        code, out, err = await _run("node", "methods.mjs", timeout=240, env={"NANGO_COMPAT": json.dumps(config)})
    assert code == 0, f"node failed:\n{err}\n{out[-4000:]}"
    walked = orjson.loads(out)
    methods, results = set(walked["methods"]), walked["results"]

    works = _works(gh.repo)
    classified = {*works, *PROVIDER_405, *UNSUPPORTED, *NOT_SENT}
    assert methods - classified == set(), "methods of the client nobody classified: add them to methods.mjs and here"
    assert classified - methods == set(), "classified methods the client no longer has"
    failures: dict[str, Any] = {}
    for name in sorted(methods):
        res = results[name]
        try:
            if name in works:
                assert res["ok"], res
                works[name](res["value"])
            elif name in PROVIDER_405:
                assert not res["ok"] and res["status"] == 405 and "documentation_url" in res["data"], res
            elif name in UNSUPPORTED:
                assert not res["ok"] and res["status"] == 501, res
                error = res["data"]["error"]
                assert error["code"] == "not_implemented" and error["feature"] == UNSUPPORTED[name], error
                assert UNSUPPORTED[name] in error["message"], error
            else:
                assert res == {"ok": True, "value": False}, res
        except (AssertionError, KeyError, TypeError, StopIteration) as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"[:800]
    assert not failures, json.dumps(failures, indent=1)


async def test_function_code_is_read_only_within_the_callers_environment(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    _, other_key = await stack.new_environment()
    async with stack.api(gh.key) as mine, stack.api(other_key) as other:
        code = await mine.request("GET", "/integrations/github/functions/issues/code")
        assert code["type"] == "sync" and "fetch_data" in code["code"]
        for path in ("/integrations/github/functions", "/integrations/github/functions/issues",
                     "/integrations/github/functions/issues/code"):
            err = await other.request("GET", path, ok=(404,))
            assert err["error"]["code"] == "not_found" and "no integration 'github'" in err["error"]["message"]
        bad = await mine.request("GET", "/integrations/github/functions", params={"type": "cron"}, ok=(400,))
        assert "type must be one of sync, action, on-event" in bad["error"]["message"]
        missing = await mine.request("GET", "/integrations/github/functions/nope/code", ok=(404,))
        assert "no deployed function 'nope'" in missing["error"]["message"]


@pytest.mark.parametrize("method, path, feature", [
    ("DELETE", "/integrations/github/functions/issues?type=sync", "deleting a function"),
    ("POST", "/integrations/quickstart", "quickstart integrations"),
])
async def test_nango_features_without_an_equivalent_answer_501_naming_them(stack: Stack, method: str, path: str,
                                                                           feature: str) -> None:
    gh = await setup_github(stack, issues=1)
    async with stack.api(gh.key) as api:
        err = await api.request(method, path, json={} if method == "POST" else None, ok=(501,))
    assert err["error"]["code"] == "not_implemented" and err["error"]["feature"] == feature
    async with stack.api("sk_not_a_key") as stranger:  # still behind the key
        assert (await stranger.request(method, path, ok=(401,)))["error"]["code"] == "unknown_account"
