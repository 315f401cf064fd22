"""Nango's own Node client, `@nangohq/node` (version pinned in tests/node/package.json, installed with npm by
this test into the git-ignored tests/node/node_modules and reused while the lock file is unchanged), against
the live stack: records, actions, syncs, connections, metadata, environment variables, integrations, proxy."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Stack, setup_github, wait_for_job

NODE_DIR = Path(__file__).parent / "node"
PINNED = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["@nangohq/node"]
STAMP = NODE_DIR / "node_modules" / ".installed-lock"

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="Node.js (node and npm) is not installed: the @nangohq/node "
                                       "compatibility tests need it")


async def _run(*args: str, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, cwd=NODE_DIR, env={**os.environ, **(env or {})},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def _install() -> None:
    """`npm ci` from the committed lock file, once: later runs reuse node_modules while the lock is unchanged."""
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    installed = NODE_DIR / "node_modules" / "@nangohq" / "node" / "package.json"
    if STAMP.exists() and STAMP.read_bytes() == lock and installed.exists():
        return
    code, out, err = await _run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", timeout=300)
    assert code == 0, f"npm ci failed (is the npm registry reachable?):\n{out}\n{err}"
    version = json.loads(installed.read_text())["version"]
    assert version == PINNED, f"installed @nangohq/node {version}, pinned {PINNED}"
    STAMP.write_bytes(lock)


def _ok(results: dict[str, Any], name: str) -> Any:
    res = results[name]
    assert res["ok"], f"{name} failed through @nangohq/node: {res}"
    return res["value"]


def _err(results: dict[str, Any], name: str) -> dict[str, Any]:
    res = results[name]
    assert not res["ok"], f"{name} should have failed: {res}"
    return res


async def test_nangos_node_client_works_against_our_api(stack: Stack) -> None:
    await _install()
    gh = await setup_github(stack, issues=5)
    await wait_for_job(stack, gh)
    stack.demo.update_issue(gh.repo, 3, title="updated before node")
    async with stack.api(gh.key) as api:
        await api.trigger_sync("github", ["issues"], "conn-1")
        await wait_for_job(stack, gh, count=2)
        await api.create_connection("github", "conn-2", {"type": "API_KEY", "apiKey": "k"})
        await api.set_environment_variables({"FROM_PYTHON": "yes"})
        some_ids = [r["id"] for r in (await api.list_records("github", "conn-1", "GithubIssue", limit=2))["records"]]
    config = {"host": stack.api_url, "key": gh.key, "integration": "github", "connectionId": "conn-1",
              "secondConnectionId": "conn-2", "repo": gh.repo, "model": "GithubIssue", "someIds": some_ids}
    code, out, err = await _run("node", "compat.mjs", timeout=150, env={"NANGO_COMPAT": json.dumps(config)})
    assert code == 0, f"node failed:\n{err}\n{out[-4000:]}"
    r: dict[str, Any] = orjson.loads(out)

    # integrations: {configs: data} (the client re-wraps our {data: [...]}), and {data: {...}}
    configs = _ok(r, "listIntegrations")["configs"]
    assert [c["unique_key"] for c in configs] == ["github"] and configs[0]["provider"] == "github"
    assert _ok(r, "getIntegration")["data"]["unique_key"] == "github"

    # connections
    listed = _ok(r, "listConnections")["connections"]
    assert [c["connection_id"] for c in listed] == ["conn-1", "conn-2"] and "created" in listed[0]
    assert "credentials" not in listed[0]
    assert len(_ok(r, "listConnectionsObject")["connections"]) == 2
    full = _ok(r, "getConnection")
    assert full["connection_id"] == "conn-1" and full["credentials"]["type"] == "OAUTH2"
    assert full["credentials"]["access_token"] == "demo-token" and full["metadata"]["repo"] == gh.repo
    assert _ok(r, "getConnectionForceRefresh")["credentials"]["access_token"] == "demo-token"  # no refresh token
    assert _ok(r, "getToken") == "demo-token"

    # records: cursor paging (limit 2) sees every record once; filters
    pages = _ok(r, "listRecordsPaged")
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [rec["id"] for p in pages for rec in p]
    assert len(ids) == len(set(ids)) == 5
    assert {rec["meta"]["last_action"] for p in pages for rec in p} == {"ADDED", "UPDATED"}
    updated = _ok(r, "listRecordsUpdated")
    assert [rec["title"] for rec in updated["records"]] == ["updated before node"] and updated["next_cursor"] is None
    assert len(_ok(r, "listRecordsAddedUpdated")["records"]) == 5
    assert sorted(rec["id"] for rec in _ok(r, "listRecordsIds")["records"]) == sorted(some_ids)

    # actions: the output unwrapped; an ActionError is a 400 with the payload; async with a status URL
    out_action = _ok(r, "triggerAction")
    assert out_action["title"] == "from node" and out_action["number"] == 6
    failed = _err(r, "triggerActionError")
    assert failed["status"] == 400 and failed["data"]["error"]["code"] == "action_script_failure"
    done = _ok(r, "triggerActionAsync")
    assert done["started"]["statusUrl"] == f"/action/{done['started']['id']}"
    assert done["result"]["title"] == "async from node"

    # metadata and environment variables
    assert _ok(r, "setMetadata") == {"status": 200, "data": {
        "metadata": {"repo": gh.repo, "a": 1}, "connection_id": "conn-1", "provider_config_key": "github"}}
    assert _ok(r, "updateMetadata")["data"]["connection_id"] == ["conn-1", "conn-2"]
    assert _ok(r, "getMetadata") == {"repo": gh.repo, "a": 1, "b": 2}
    assert _ok(r, "getEnvironmentVariables") == [{"name": "FROM_PYTHON", "value": "yes"}]
    assert _ok(r, "createConnectSession")["data"]["token"].startswith("nango_connect_session_")

    # proxy: the provider's answer as is
    user = _ok(r, "proxyGet")
    assert user["status"] == 200 and user["data"]["login"]
    listed_issues = _ok(r, "proxyParams")
    assert listed_issues["status"] == 200 and len(listed_issues["data"]) == 2
    posted = _ok(r, "proxyPost")
    assert posted["status"] == 201 and posted["data"]["title"] == "proxied from node"
    not_found = _err(r, "proxyNotFound")
    assert not_found["status"] == 404 and not_found["data"]["message"] == "Not Found"

    # syncs
    assert _ok(r, "pauseSync")["status"] == 200
    paused = _ok(r, "syncStatusPaused")["syncs"]
    assert paused[0]["name"] == "issues" and paused[0]["status"] == "PAUSED"
    assert _ok(r, "startSync")["status"] == 200
    status_all = _ok(r, "syncStatusAll")["syncs"]
    assert status_all[0]["status"] != "PAUSED" and status_all[0]["latestResult"]["GithubIssue"]["updated"] == 1
    assert _ok(r, "updateFrequency") == {"frequency": "every 2h"}
    assert _ok(r, "resetFrequency") == {"frequency": "every 5 minutes"}
    for name in ("triggerSync", "triggerSyncReset", "triggerSyncLegacy"):
        answer = _ok(r, name)
        assert answer["status"] == 200 and answer["data"]["success"] is True
        assert [t["sync"] for t in answer["data"]["triggered"]] == ["issues"]

    # delete, and a wrong key
    assert _ok(r, "deleteConnection") == {"status": 200, "data": {"success": True}}
    assert [c["connection_id"] for c in _ok(r, "listConnectionsAfterDelete")["connections"]] == ["conn-1"]
    wrong = _err(r, "wrongKey")
    assert wrong["status"] == 401 and wrong["data"]["error"]["code"] == "unknown_account"
