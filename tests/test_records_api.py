"""GET /records through the real API, and deletion detection through a real full sync."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orchestrator.authoring.compile import compile_project
from orchestrator.client.api import ApiError
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records
from orchestrator.temporal import names, schedules
from tests.conftest import EXAMPLES, Stack, eventually

HEADERS = {"Connection-Id": "c1", "Provider-Config-Key": "github"}


async def setup_connection(stack: Stack, connection_id: str = "c1") -> tuple[str, records.Scope]:
    """A new environment with a github integration and one connection; returns (secret key, scope)."""
    env_name, key = await stack.new_environment()
    async with stack.pool.acquire() as conn:
        env = await environments_repo.by_name(conn, env_name)
        assert env is not None
        await integrations_repo.upsert(conn, env.id, "github", "github")
    async with stack.api(key) as api:
        await api.create_connection("github", connection_id, {"type": "OAUTH2", "access_token": "t"})
    async with stack.pool.acquire() as conn:
        pk = await conn.fetchval("SELECT id FROM connections WHERE environment_id = $1 AND connection_id = $2",
                                 env.id, connection_id)
    return key, records.Scope(env.id, pk, "Issue")


async def save(stack: Stack, scope: records.Scope, batch: list[dict[str, Any]]) -> records.WriteResult:
    async with stack.pool.acquire() as conn:
        return await records.batch_save(conn, scope, batch)


async def get(stack: Stack, key: str | None, params: Any, *, path: str = "/records",
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    hdrs = dict(HEADERS if headers is None else headers)
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    async with aiohttp.ClientSession() as session, session.get(stack.api_url + path, params=params,
                                                               headers=hdrs) as resp:
        return resp.status, await resp.json()


async def test_paging_metadata_and_trailing_slash(stack: Stack) -> None:
    key, scope = await setup_connection(stack)
    await save(stack, scope, [{"id": str(i), "n": i, "nested": {"a": [i]}} for i in range(150)])
    status, page = await get(stack, key, {"model": "Issue"})
    assert status == 200
    assert len(page["records"]) == 100 and page["next_cursor"]  # default limit 100
    first = page["records"][0]
    assert first["id"] == "0" and first["n"] == 0 and first["nested"] == {"a": [0]}
    meta = first["_nango_metadata"]
    assert meta["last_action"] == "ADDED" and meta["deleted_at"] is None
    assert datetime.fromisoformat(meta["first_seen_at"]) <= datetime.now(UTC)
    assert meta["last_modified_at"] and meta["cursor"]
    assert page["records"][-1]["_nango_metadata"]["cursor"] == page["next_cursor"]
    status, rest = await get(stack, key, {"model": "Issue", "cursor": page["next_cursor"]}, path="/records/")
    assert status == 200 and [r["n"] for r in rest["records"]] == list(range(100, 150))
    assert rest["next_cursor"] is None
    _, big = await get(stack, key, {"model": "Issue", "limit": "10000"})
    assert len(big["records"]) == 150 and big["next_cursor"] is None
    _, exact = await get(stack, key, {"model": "Issue", "limit": "150"})
    assert len(exact["records"]) == 150 and exact["next_cursor"]  # a full page may have more after it
    _, after = await get(stack, key, {"model": "Issue", "cursor": exact["next_cursor"]})
    assert after == {"records": [], "next_cursor": None}
    _, none = await get(stack, key, {"model": "Unknown"})
    assert none == {"records": [], "next_cursor": None}


async def test_a_page_of_many_chunks_keeps_every_record_exact_and_once(stack: Stack) -> None:
    """A page spans many of PostgreSQL's COPY pieces and the route's writes: records with backslashes, quotes,
    newlines and non-ASCII text come back exactly, each once, in cursor order, at any limit."""
    key, scope = await setup_connection(stack)
    text = "back\\slash \\n-not-a-newline tab\t newline\n quote\" é 漢字 🎉 " * 40
    saved = [{"id": f"r\\{i}\n", "n": i, "text": text if i % 3 else "plain " * 300} for i in range(1_500)]
    await save(stack, scope, saved)
    _, whole = await get(stack, key, {"model": "Issue", "limit": "10000"})
    assert [{k: v for k, v in r.items() if k != "_nango_metadata"} for r in whole["records"]] == saved
    assert whole["next_cursor"] is None
    got: list[int] = []
    cursor = None
    while True:
        _, page = await get(stack, key, {"model": "Issue", "limit": "700", **({"cursor": cursor} if cursor else {})})
        got += [r["n"] for r in page["records"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert cursor == page["records"][-1]["_nango_metadata"]["cursor"]
    assert got == list(range(1_500))


async def test_filters_ids_modified_after_and_variant(stack: Stack) -> None:
    key, scope = await setup_connection(stack)
    await save(stack, scope, [{"id": str(i), "v": 1} for i in range(10)])
    async with stack.pool.acquire() as conn:
        await conn.execute("UPDATE records SET last_modified_at = now() - interval '1 day' WHERE scope_id IN"
                           " (SELECT id FROM record_scopes WHERE connection_pk = $1)", scope.connection_pk)
        await records.batch_delete(conn, scope, [{"id": "1"}])
    await save(stack, scope, [{"id": "2", "v": 2}])

    async def ids(**params: Any) -> list[str]:
        query: list[tuple[str, str]] = [("model", "Issue")]
        for k, v in params.items():
            query += [(k, x) for x in v] if isinstance(v, list) else [(k, v)]
        status, page = await get(stack, key, query)
        assert status == 200, page
        return [r["id"] for r in page["records"]]

    assert await ids(filter="deleted") == ["1"]
    assert await ids(filter="UPDATED") == ["2"]
    assert await ids(filter="Added, deleted") == ["0", *map(str, range(3, 10)), "1"]
    assert await ids(filter="updated,deleted") == ["1", "2"]
    assert await ids(ids=["3", "2", "nope"]) == ["3", "2"]  # cursor order
    assert await ids(ids=["3", "1"], filter="deleted") == ["1"]
    assert await ids(ids=[str(i) for i in range(100)]) == [*(str(i) for i in range(10) if i not in (1, 2)), "1", "2"]
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert await ids(modified_after=since) == ["1", "2"]
    assert await ids(modified_after=since.replace("+00:00", "Z")) == ["1", "2"]
    assert await ids(modified_after=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []

    v2 = records.Scope(scope.environment_id, scope.connection_pk, scope.model, "v2")
    await save(stack, v2, [{"id": "x", "v": "variant"}])
    assert await ids(variant="v2") == ["x"]
    assert await ids(variant="base", ids=["x"]) == []


@pytest.mark.parametrize(("params", "parameter"), [
    ({}, "model"),
    ({"model": " "}, "model"),
    ({"model": "Issue", "limit": "0"}, "limit"),
    ({"model": "Issue", "limit": "-5"}, "limit"),
    ({"model": "Issue", "limit": "10001"}, "limit"),
    ({"model": "Issue", "limit": "ten"}, "limit"),
    ({"model": "Issue", "cursor": "not-a-cursor"}, "cursor"),
    ({"model": "Issue", "cursor": "Yw"}, "cursor"),
    ({"model": "Issue", "modified_after": "yesterday"}, "modified_after"),
    ({"model": "Issue", "modified_after": "2024-01-01T00:00:00"}, "modified_after"),
    ({"model": "Issue", "filter": "added,removed"}, "filter"),
    ({"model": "Issue", "filter": ","}, "filter"),
    ([("model", "Issue"), *[("ids", str(i)) for i in range(101)]], "ids"),
    ({"model": "Issue", "ids": ""}, "ids"),
    ({"model": "Issue", "variant": "x" * 256}, "variant"),
])
async def test_bad_parameters_answer_400_naming_them(stack: Stack, params: Any, parameter: str) -> None:
    key, _ = await setup_connection(stack)
    status, body = await get(stack, key, params)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_query_params"
    assert body["error"]["message"].startswith(parameter), body


async def test_auth_unknown_connection_and_isolation(stack: Stack) -> None:
    key_a, scope_a = await setup_connection(stack)
    key_b, scope_b = await setup_connection(stack)
    await save(stack, scope_a, [{"id": "a"}])
    await save(stack, scope_b, [{"id": "b"}])

    status, body = await get(stack, None, {"model": "Issue"})
    assert status == 401 and body["error"]["code"] == "missing_auth_header"
    status, body = await get(stack, "sk-wrong", {"model": "Issue"})
    assert status == 401 and body["error"]["code"] == "unknown_account"
    status, body = await get(stack, key_a, {"model": "Issue"}, headers={**HEADERS, "Connection-Id": "c2"})
    assert status == 404 and "c2" in body["error"]["message"]
    status, body = await get(stack, key_a, {"model": "Issue"}, headers={"Connection-Id": "c1"})
    assert status == 400 and "Provider-Config-Key" in body["error"]["message"]

    # Both environments have a connection 'c1' of integration 'github': each key sees its own.
    assert [r["id"] for r in (await get(stack, key_a, {"model": "Issue"}))[1]["records"]] == ["a"]
    assert [r["id"] for r in (await get(stack, key_b, {"model": "Issue"}))[1]["records"]] == ["b"]
    # A cursor from one connection does not open another's records.
    _, page = await get(stack, key_a, {"model": "Issue", "limit": "1"})
    _, other = await get(stack, key_b, {"model": "Issue", "cursor": page["next_cursor"]})
    assert [r["id"] for r in other["records"]] in ([], ["b"])


# ---- deletion detection through the real stack ----------------------------------------------------------

def full_sync_project(tmp_path: Path) -> Path:
    """The example project as a full sync with track_deletes, fetching everything each run, and failing on
    demand (connection metadata `fail: true`) after it has saved what it fetched."""
    folder = tmp_path / "nango-integrations"
    shutil.copytree(EXAMPLES, folder)
    yaml = folder / "nango.yaml"
    yaml.write_text(yaml.read_text().replace("sync_type: incremental", "sync_type: full\n        track_deletes: true"))
    script = folder / "github" / "syncs" / "issues.py"
    code = script.read_text()
    code = code.replace('    if nango.last_sync_date:\n        params["since"] = nango.last_sync_date.isoformat()\n',
                        "")
    code = code.replace('    await nango.log(f"saved {saved} issues from {repo}")',
                        '    if metadata.get("fail"):\n        raise RuntimeError("failing on purpose")\n'
                        '    await nango.log(f"saved {saved} issues from {repo}")')
    assert "params[\"since\"]" not in code and "failing on purpose" in code
    script.write_text(code)
    return folder


async def test_full_sync_track_deletes_only_after_success(stack: Stack, tmp_path: Path) -> None:
    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"deletes/{env}", 5)
    async with stack.api(key) as api:
        result = await api.deploy(compile_project(full_sync_project(tmp_path)))
        assert result["applied"], result
        await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
        sid = names.sync_schedule_id(env, "github", "conn-1", "issues")
        async with stack.pool.acquire() as conn:
            pk = await conn.fetchval("SELECT c.id FROM connections c JOIN environments e ON e.id = c.environment_id"
                                     " WHERE e.name = $1 AND c.connection_id = 'conn-1'", env)

        async def by_number() -> dict[int, str]:
            recs = await api.all_records("github", "conn-1", "GithubIssue")
            return {r["number"]: r["_nango_metadata"]["last_action"] for r in recs}

        async def jobs_done(n: int) -> list[Any]:
            async with stack.pool.acquire() as conn:
                jobs = await jobs_repo.latest(conn, pk, "issues", limit=10)
            finished = [j for j in jobs if j.status != "running"]
            assert len(finished) >= n, [j.status for j in jobs]
            return finished

        async def initial() -> None:
            assert await by_number() == dict.fromkeys(range(1, 6), "ADDED")
        await eventually(initial)
        await eventually(lambda: jobs_done(1))

        # Issue 2 disappears upstream, but the next run fails after saving what it saw: nothing is deleted.
        stack.demo.delete_issue(repo, 2)
        async with stack.pool.acquire() as conn:
            await conn.execute("UPDATE connections SET metadata = metadata || '{\"fail\": true}' WHERE id = $1", pk)
        await schedules.trigger(stack.client, sid)
        finished = await eventually(lambda: jobs_done(2))
        assert finished[0].status == "failed", finished[0]
        assert finished[0].counts.get("GithubIssue", {}).get("deleted", 0) == 0
        assert await by_number() == dict.fromkeys(range(1, 6), "ADDED")

        # The next successful run deletes it, and counts it.
        async with stack.pool.acquire() as conn:
            await conn.execute("UPDATE connections SET metadata = metadata - 'fail' WHERE id = $1", pk)
        await schedules.trigger(stack.client, sid)
        finished = await eventually(lambda: jobs_done(3))
        assert finished[0].status == "success", finished[0]
        assert finished[0].counts["GithubIssue"]["deleted"] == 1
        assert await by_number() == {1: "ADDED", 2: "DELETED", 3: "ADDED", 4: "ADDED", 5: "ADDED"}
        deleted = await api.list_records("github", "conn-1", "GithubIssue", filter="deleted")
        assert [r["number"] for r in deleted["records"]] == [2]
        assert deleted["records"][0]["_nango_metadata"]["deleted_at"]


async def test_client_errors_surface_the_parameter(stack: Stack) -> None:
    key, _ = await setup_connection(stack)
    async with stack.api(key) as api:
        with pytest.raises(ApiError) as err:
            await api.list_records("github", "c1", "Issue", limit=20000)
    assert err.value.status == 400 and err.value.message.startswith("limit")
