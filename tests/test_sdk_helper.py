"""The `nango` helper end to end: a script in its sandboxed child, a real ScriptHost, the demo
provider (GitHub-like) and a small echo API for auth modes and cursor/offset pagination."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.crypto import Sealer
from orchestrator.providers.catalog import Provider
from orchestrator.providers.egress import entry_for
from orchestrator.runner.host import Runner
from orchestrator.runs.testing import ScriptBench
from orchestrator.store import jobs as jobs_repo
from orchestrator.store.types import ApiKeyCredentials, BasicCredentials, OAuth2ClientCredentials, OAuth2Credentials
from tests.conftest import Stack

ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 24)]


def echo_app(seen: list[dict[str, Any]]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen.append({"path": request.path, "query": dict(request.query), "body": body,
                     "headers": dict(request.headers)})
        return web.json_response({"headers": dict(request.headers), "query": dict(request.query), "body": body})

    async def cursor_items(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        args = {**request.query, **(body or {})}
        seen.append({"path": request.path, "args": args})
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 10)
        chunk = ITEMS[start:start + limit]
        nxt = start + limit if start + limit < len(ITEMS) else None
        return web.json_response({"data": {"items": chunk}, "meta": {"next": str(nxt) if nxt else None}})

    async def offset_items(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "args": dict(request.query)})
        offset = int(request.query.get("offset", 0))
        limit = int(request.query.get("limit", 5))
        return web.json_response({"results": ITEMS[offset:offset + limit]})

    async def page_items(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "args": dict(request.query)})
        page = int(request.query.get("page", 1))
        return web.json_response(ITEMS[(page - 1) * 10: page * 10])

    async def sticky_cursor(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "args": dict(request.query)})
        return web.json_response({"items": [{"id": 1}], "next": "same"})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/cursor", cursor_items)
    app.router.add_get("/offset", offset_items)
    app.router.add_get("/pages", page_items)
    app.router.add_get("/sticky", sticky_cursor)
    return app


@pytest.fixture(scope="module")
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    server = TestServer(echo_app(seen), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


@pytest.fixture(scope="module")
async def sb(stack: Stack, echo: tuple[str, list[dict[str, Any]]],
             tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScriptBench]:
    session = aiohttp.ClientSession()
    runner = await Runner.create(warm=1)
    bench = await ScriptBench(stack.pool, Sealer(stack.settings.encryption_key_bytes()), session,
                              tmp_path_factory.mktemp("sdk"), runner).setup()
    # the demo provider and the echo server run on loopback: listed, as an operator lists internal hosts
    bench.egress_allow = [entry_for(stack.provider_url), entry_for(echo[0])]
    try:
        yield bench
    finally:
        await runner.close()
        await session.close()


def echo_provider(base_url: str, **extra: Any) -> Provider:
    return Provider(name="echo", display_name="Echo", auth_mode=extra.pop("auth_mode", "API_KEY"), base_url=base_url,
                    **extra)


async def logs_of(sb: ScriptBench, job_id: int | None) -> list[dict[str, Any]]:
    assert job_id is not None
    async with sb.pool.acquire() as conn:
        return await jobs_repo.logs(conn, job_id)


def ok(outcome: Any) -> Any:
    assert outcome.ok, outcome.error
    return outcome.output


# ---- HTTP -------------------------------------------------------------------------------------------

async def test_http_verbs_and_proxy_against_the_demo_provider(sb: ScriptBench, stack: Stack) -> None:
    repo = stack.demo.add_repo(f"sdk/{sb.environment_name}", 3)
    conn = await sb.connection(connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
    outcome, _ = await sb.run(f"""
        async def run_action(nango, inp):
            created = await nango.post(endpoint="/repos/{repo}/issues", data={{"title": "from a script"}})
            number = created.data["number"]
            patched = await nango.patch(f"/repos/{repo}/issues/{{number}}", data={{"state": "closed"}})
            got = await nango.get({{"endpoint": f"/repos/{repo}/issues/{{number}}"}})
            listed = await nango.proxy(method="GET", endpoint="/repos/{repo}/issues", params={{"state": "all"}})
            via_dict = await nango.proxy({{"method": "GET", "endpoint": "/repos/{repo}/issues",
                                          "params": {{"state": "closed"}}}})
            return {{"created": created.status, "patched": patched.data["state"], "got": got.data["title"],
                     "count": len(listed.data), "closed": len(via_dict.data),
                     "has_headers": "X-RateLimit-Limit" in got.headers}}
    """, conn, kind="action")
    assert ok(outcome) == {"created": 201, "patched": "closed", "got": "from a script", "count": 4, "closed": 1,
                           "has_headers": True}


async def test_http_error_is_clear_and_carries_status(sb: ScriptBench, stack: Stack) -> None:
    conn = await sb.connection(connection_config={"base_url": stack.provider_url})
    outcome, _ = await sb.run("""
        from orchestrator.sdk import HttpError
        async def run_action(nango, inp):
            try:
                await nango.get("/repos/nobody/nothing/issues/1")
            except HttpError as exc:
                return {"status": exc.status, "message": str(exc), "data": exc.data["message"]}
    """, conn, kind="action")
    out = ok(outcome)
    assert out["status"] == 404 and "GET /repos/nobody/nothing/issues/1 answered 404" in out["message"]
    assert out["data"] == "Not Found"


@pytest.mark.parametrize("mode", ["bearer", "api_key_header", "api_key_query", "basic"])
async def test_credentials_are_injected_per_auth_mode(sb: ScriptBench, echo: tuple[str, list], mode: str) -> None:
    base, _seen = echo
    if mode == "bearer":
        creds: Any = OAuth2Credentials(access_token="oauth-secret-1")
        provider = echo_provider(base, auth_mode="OAUTH2")
    elif mode == "api_key_header":
        creds = ApiKeyCredentials(apiKey="key-secret-2")
        provider = echo_provider(base, api_key_header="X-Api-Key", api_key_template="${apiKey}")
    elif mode == "api_key_query":
        creds = ApiKeyCredentials(apiKey="key-secret-3")
        provider = echo_provider(base, api_key_query="api_key")
    else:
        creds = BasicCredentials(username="ann", password="pw-secret-4")
        provider = echo_provider(base, auth_mode="BASIC")
    conn = await sb.connection(creds)
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            r = await nango.get("/echo", params={"q": "1"})
            return {"auth": r.data["headers"].get("Authorization"), "key": r.data["headers"].get("X-Api-Key"),
                    "query": r.data["query"]}
    """, conn, kind="action", provider=provider)
    out = ok(outcome)
    expected = {
        "bearer": {"auth": "Bearer oauth-secret-1", "key": None, "query": {"q": "1"}},
        "api_key_header": {"auth": None, "key": "key-secret-2", "query": {"q": "1"}},
        "api_key_query": {"auth": None, "key": None, "query": {"q": "1", "api_key": "key-secret-3"}},
        "basic": {"auth": "Basic YW5uOnB3LXNlY3JldC00", "key": None, "query": {"q": "1"}},
    }[mode]
    assert out == expected


async def test_retries_on_5xx_and_429_honour_retry_after(sb: ScriptBench, stack: Stack) -> None:
    repo = stack.demo.add_repo(f"retry/{sb.environment_name}", 2)
    conn = await sb.connection(connection_config={"base_url": stack.provider_url})
    prefix = f"/repos/{repo}"
    stack.demo.fail_next(2, status=503, path_prefix=prefix)
    stack.demo.fail_next(1, status=429, retry_after=1, path_prefix=prefix)
    started = time.monotonic()
    outcome, _ = await sb.run(f"""
        import time
        async def run_action(nango, inp):
            r = await nango.get("/repos/{repo}/issues", retries=4)
            return len(r.data)
    """, conn, kind="action")
    assert ok(outcome) == 2
    assert time.monotonic() - started >= 1.0  # the 429's Retry-After: 1 was waited
    statuses = [r["status"] for r in stack.demo.requests if r["path"] == f"{prefix}/issues"]
    assert statuses[-4:] == [503, 503, 429, 200]
    stack.demo.fail_next(1, status=500, path_prefix=prefix)
    outcome, _ = await sb.run(f"""
        async def run_action(nango, inp):
            await nango.get("/repos/{repo}/issues")
    """, conn, kind="action")
    assert not outcome.ok and outcome.error["type"] == "HttpError" and "answered 500" in outcome.error["message"]


async def test_retry_on_adds_statuses(sb: ScriptBench, stack: Stack) -> None:
    repo = stack.demo.add_repo(f"retryon/{sb.environment_name}", 1)
    conn = await sb.connection(connection_config={"base_url": stack.provider_url})
    stack.demo.fail_next(1, status=409, retry_after=None, path_prefix=f"/repos/{repo}")
    outcome, _ = await sb.run(f"""
        async def run_action(nango, inp):
            return (await nango.get("/repos/{repo}/issues", retries=1, retry_on=[409])).status
    """, conn, kind="action")
    assert ok(outcome) == 200


async def oauth_connection(sb: ScriptBench, stack: Stack, ttl_seconds: int) -> tuple[Any, dict[str, Any]]:
    await sb.set_oauth_client("demo-client-id", "demo-client-secret")
    token = stack.demo.issue_token(ttl_seconds=ttl_seconds)
    creds = OAuth2Credentials(access_token=token["access_token"], refresh_token=token["refresh_token"],
                              expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds))
    conn = await sb.connection(creds, connection_config={
        "base_url": stack.provider_url, "token_url": stack.provider_url + "/login/oauth/access_token"})
    return conn, token


async def test_401_refreshes_the_oauth_token_once(sb: ScriptBench, stack: Stack) -> None:
    conn, token = await oauth_connection(sb, stack, ttl_seconds=7200)
    stack.demo.expire_token(token["access_token"])  # the provider revoked it early
    outcome, host = await sb.run("""
        async def run_action(nango, inp):
            me = await nango.get("/user")
            return {"login": me.data["login"], "token": await nango.get_token()}
    """, conn, kind="action")
    out = ok(outcome)
    assert out["login"] and out["token"] != token["access_token"]
    assert host.connection.credentials.access_token.get_secret_value() == out["token"]


async def test_get_token_refreshes_within_15_minutes_and_hides_refresh_token(sb: ScriptBench, stack: Stack) -> None:
    conn, token = await oauth_connection(sb, stack, ttl_seconds=600)
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            plain = await nango.get_connection()
            full = await nango.get_connection(include_refresh_token=True)
            return {"token": await nango.get_token(), "plain": plain["credentials"],
                    "full_has_refresh": bool(full["credentials"].get("refresh_token")),
                    "config": plain["connection_config"]}
    """, conn, kind="action")
    out = ok(outcome)
    assert out["token"] != token["access_token"]
    assert "refresh_token" not in out["plain"] and out["full_has_refresh"]
    assert out["config"]["base_url"] == stack.provider_url


async def test_a_client_credentials_token_is_sent_returned_and_reminted_in_a_script(sb: ScriptBench,
                                                                                    stack: Stack) -> None:
    """OAUTH2_CC in a run: requests carry the minted token, get_token returns it (Nango's string), and a token
    within 15 minutes of its expiry is minted again with the connection's own client credentials."""
    minted = stack.demo.issue_token(ttl_seconds=600)
    creds = OAuth2ClientCredentials(token=minted["access_token"], client_id=stack.demo.client_id,
                                    client_secret=stack.demo.client_secret,
                                    expires_at=datetime.now(UTC) + timedelta(seconds=600))
    conn = await sb.connection(creds, connection_config={
        "base_url": stack.provider_url, "token_url": stack.provider_url + "/login/oauth/access_token"})
    outcome, host = await sb.run("""
        async def run_action(nango, inp):
            me = await nango.get("/user")
            conn = await nango.get_connection()
            creds = conn["credentials"]
            nango.log(f"minted {creds['token']} with {creds['client_secret']}")
            return {"login": me.data["login"], "token": await nango.get_token(), "type": creds["type"]}
    """, conn, kind="action")
    out = ok(outcome)
    assert out["login"] and out["type"] == "OAUTH2_CC"
    assert out["token"] != minted["access_token"] and stack.demo.token_valid(out["token"])
    assert host.connection.credentials.token.get_secret_value() == out["token"]
    # the token and the client secret are masked in the run's logs like every other credential
    assert [entry["message"] for entry in await logs_of(sb, host.job_id)] == ["minted *** with ***"]


# ---- pagination ------------------------------------------------------------------------------------

async def test_paginate_link_with_provider_defaults_and_lazy_break(sb: ScriptBench, stack: Stack) -> None:
    repo = stack.demo.add_repo(f"pages/{sb.environment_name}", 45)
    conn = await sb.connection(connection_config={"base_url": stack.provider_url})
    path = f"/repos/{repo}/issues"
    outcome, _ = await sb.run(f"""
        async def run_action(nango, inp):
            sizes = []
            async for page in nango.paginate("{path}", params={{"state": "all"}}, limit=10):
                sizes.append(len(page))
            first = None
            async for page in nango.paginate("{path}", params={{"state": "all"}}, limit=10):
                first = len(page)
                break
            return {{"sizes": sizes, "first": first}}
    """, conn, kind="action")
    assert ok(outcome) == {"sizes": [10, 10, 10, 10, 5], "first": 10}
    calls = [r for r in stack.demo.requests if r["path"] == path]
    assert len(calls) == 6  # 5 pages, then 1 for the loop that broke after its first page
    assert calls[0]["query"]["per_page"] == "10"


async def test_paginate_cursor_with_response_path_and_on_page(sb: ScriptBench, echo: tuple[str, list]) -> None:
    base, _seen = echo
    conn = await sb.connection(ApiKeyCredentials(apiKey="k"))
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            params_seen = []
            async def on_page(next_param, response):
                params_seen.append(next_param)
            pages = []
            async for page in nango.paginate("/cursor", type="cursor", cursor_path_in_response="meta.next",
                                             cursor_name_in_request="cursor", response_path="data.items",
                                             limit=10, limit_name_in_request="limit", on_page=on_page):
                pages.append([item["id"] for item in page])
            return {"pages": pages, "next": params_seen}
    """, conn, kind="action", provider=echo_provider(base))
    out = ok(outcome)
    assert out["pages"] == [list(range(1, 11)), list(range(11, 21)), [21, 22, 23]]
    assert out["next"] == ["10", "20", None]


async def test_paginate_in_body_and_post(sb: ScriptBench, echo: tuple[str, list]) -> None:
    base, seen = echo
    conn = await sb.connection(ApiKeyCredentials(apiKey="k"))
    seen.clear()
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            total = 0
            async for page in nango.paginate({"endpoint": "/cursor", "method": "POST", "data": {"q": "x"},
                                              "paginate": {"type": "cursor", "cursorPathInResponse": "meta.next",
                                                           "cursorNameInRequest": "cursor", "limit": 20,
                                                           "limitNameInRequest": "limit",
                                                           "responsePath": "data.items"}}):
                total += len(page)
            return total
    """, conn, kind="action", provider=echo_provider(base))
    assert ok(outcome) == 23
    assert [c["args"] for c in seen if c["path"] == "/cursor"] == [
        {"q": "x", "limit": 20}, {"q": "x", "limit": 20, "cursor": "20"}]


async def test_paginate_offset_and_page_stop_on_short_or_empty_page(sb: ScriptBench, echo: tuple[str, list]) -> None:
    base, seen = echo
    conn = await sb.connection(ApiKeyCredentials(apiKey="k"))
    seen.clear()
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            by_size = [len(p) async for p in nango.paginate(
                "/offset", type="offset", offset_name_in_request="offset", limit=5, limit_name_in_request="limit",
                response_path="results")]
            per_page = [len(p) async for p in nango.paginate(
                "/offset", type="offset", offset_name_in_request="offset", offset_calculation_method="per-page",
                offset_start_value=0, limit=100, limit_name_in_request="limit", response_path="results")]
            pages = [len(p) async for p in nango.paginate("/pages", type="page", page_name_in_request="page")]
            return {"by_size": by_size, "per_page": per_page, "pages": pages}
    """, conn, kind="action", provider=echo_provider(base))
    assert ok(outcome) == {"by_size": [5, 5, 5, 5, 3], "per_page": [23], "pages": [10, 10, 3]}
    offsets = [c["args"]["offset"] for c in seen if c["path"] == "/offset"]
    assert offsets == ["0", "5", "10", "15", "20", "0"]
    assert [c["args"]["page"] for c in seen if c["path"] == "/pages"] == ["1", "2", "3", "4"]  # 4th is empty


async def test_paginate_stops_on_repeated_cursor_and_rejects_unknown_options(
        sb: ScriptBench, echo: tuple[str, list]) -> None:
    base, _seen = echo
    conn = await sb.connection(ApiKeyCredentials(apiKey="k"))
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            pages = [p async for p in nango.paginate("/sticky", type="cursor", cursor_path_in_response="next",
                                                     cursor_name_in_request="c", response_path="items")]
            try:
                [p async for p in nango.paginate("/sticky", cursor_path="oops")]
            except TypeError as exc:
                return {"pages": len(pages), "error": str(exc)}
    """, conn, kind="action", provider=echo_provider(base))
    assert ok(outcome) == {"pages": 2, "error": "paginate() got unknown option(s): cursor_path"}


# ---- logs, env, metadata, checkpoints, misc -----------------------------------------------------------

async def test_logs_levels_and_redaction(sb: ScriptBench, stack: Stack) -> None:
    conn = await sb.connection(OAuth2Credentials(access_token="super-secret-token-123"),
                               connection_config={"base_url": stack.provider_url})
    outcome, host = await sb.run("""
        async def fetch_data(nango):
            token = await nango.get_token()
            await nango.log("debugging", level="debug")
            nango.log(f"the token is {token}", level="error", token=token)
            nango.log("plain")
            nango.log("x" * 20_000, level="warn")
            envs = await nango.get_environment_variables()
            nango.log("env", level="info", value=envs[0]["value"])
    """, conn, environment_variables=[{"name": "API_SECRET", "value": "env-secret-value"}])
    ok(outcome)
    logs = await logs_of(sb, host.job_id)
    assert [entry["level"] for entry in logs] == ["debug", "error", "info", "warn", "info"]
    assert logs[1]["message"] == "the token is ***" and logs[1]["fields"] == {"token": "***"}
    assert len(logs[3]["message"]) < 10_100 and "truncated 10000 characters" in logs[3]["message"]
    assert logs[4]["fields"] == {"value": "***"}


async def test_environment_variables_metadata_variant(sb: ScriptBench) -> None:
    conn = await sb.connection(metadata={"a": 1})
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            before = await nango.get_metadata()
            await nango.update_metadata({"b": 2})
            merged = await nango.get_metadata()
            await nango.set_metadata({"c": 3})
            return {"before": before, "merged": merged, "after": await nango.get_metadata(),
                    "env": await nango.get_environment_variables(), "variant": nango.variant,
                    "connection_id": nango.connection_id}
    """, conn, kind="action", environment_variables=[{"name": "X", "value": "1"}], variant="eu")
    out = ok(outcome)
    assert out["before"] == {"a": 1} and out["merged"] == {"a": 1, "b": 2} and out["after"] == {"c": 3}
    assert out["env"] == [{"name": "X", "value": "1"}] and out["variant"] == "eu"
    assert out["connection_id"] == conn.connection_id
    async with sb.pool.acquire() as db:
        assert await db.fetchval("SELECT metadata FROM connections WHERE id = $1", conn.id) == {"c": 3}


async def test_resumed_sync_continues_from_its_checkpoint(sb: ScriptBench) -> None:
    conn = await sb.connection()
    script = """
        async def fetch_data(nango):
            checkpoint = await nango.get_checkpoint() or {"next": 0}
            start = checkpoint["next"]
            for i in range(start, 10):
                await nango.batch_save([{"id": i, "v": i}], "Thing")
                await nango.save_checkpoint({"next": i + 1})
                if i == 4 and start == 0:
                    raise RuntimeError("worker lost mid-run")
            await nango.clear_checkpoint()
            nango.log(f"started at {start}")
    """
    first, _ = await sb.run(script, conn, sync_name="resumable")
    assert not first.ok and "worker lost mid-run" in first.error["message"]
    second, host = await sb.run(script, conn, sync_name="resumable")
    ok(second)
    assert [e["message"] for e in await logs_of(sb, host.job_id)] == ["started at 5"]
    assert host.progress.added == 5
    async with sb.pool.acquire() as db:
        assert (await jobs_repo.get_state(db, conn.id, "resumable"))["checkpoint"] is None


async def test_records_helpers(sb: ScriptBench) -> None:
    conn = await sb.connection()
    outcome, host = await sb.run("""
        async def fetch_data(nango):
            await nango.batch_save([{"id": i, "n": i, "tags": ["a"]} for i in range(12_000)], "Row")
            await nango.batch_update([{"id": 1, "tags": ["b"], "extra": True}], "Row")
            await nango.batch_delete([{"id": 2}], "Row")
            got = await nango.get_records_by_id([0, 1, 2, "missing"], "Row")
            assert sorted(got) == ["0", "1"], got  # deleted and unknown ids are absent
            assert got["1"]["tags"] == ["b"] and got["1"]["extra"] is True, got["1"]
            assert nango.last_sync_date is None
    """, conn)
    ok(outcome)
    assert host.progress.models["Row"] == {"added": 12_000, "updated": 1, "deleted": 1}


async def test_trigger_action_says_it_is_not_available(sb: ScriptBench) -> None:
    conn = await sb.connection()
    outcome, _ = await sb.run("""
        async def run_action(nango, inp):
            await nango.trigger_action("github", "c", "other", {"x": 1})
    """, conn, kind="action")
    assert not outcome.ok and "trigger_action is not available" in outcome.error["message"]


MODELS = '''
from pydantic import BaseModel

class CreateIssueInput(BaseModel):
    title: str
    count: int

class IssueOutput(BaseModel):
    number: int
    title: str
'''


async def test_action_input_and_output_are_validated_naming_the_field(sb: ScriptBench) -> None:
    conn = await sb.connection()
    files = {"github/actions/create.py": """
        from models import CreateIssueInput, IssueOutput
        async def run_action(nango, inp: CreateIssueInput):
            if inp.title == "bad-output":
                return {"number": "not a number", "title": inp.title}
            return IssueOutput(number=inp.count, title=inp.title)
    """, "models.py": MODELS}
    models = {"input_model": "CreateIssueInput", "output_model": "IssueOutput"}
    good, _ = await sb.run(files, conn, kind="action", input={"title": "t", "count": 3}, context=models)
    assert ok(good) == {"number": 3, "title": "t"}
    bad_in, _ = await sb.run(files, conn, kind="action", input={"title": "t", "count": "three"}, context=models)
    assert not bad_in.ok and bad_in.error["type"] == "InputValidationError"
    assert "field 'count'" in bad_in.error["message"] and "CreateIssueInput" in bad_in.error["message"]
    bad_out, _ = await sb.run(files, conn, kind="action", input={"title": "bad-output", "count": 1}, context=models)
    assert not bad_out.ok and bad_out.error["type"] == "OutputValidationError"
    assert "field 'number'" in bad_out.error["message"]


async def test_action_error_payload(sb: ScriptBench) -> None:
    conn = await sb.connection()
    outcome, _ = await sb.run("""
        from orchestrator.sdk import ActionError
        async def run_action(nango, inp):
            raise ActionError({"reason": "nope"})
    """, conn, kind="action")
    assert not outcome.ok and outcome.error["type"] == "action_error" and outcome.error["payload"] == {
        "reason": "nope"}


async def test_a_failing_chunk_stops_the_rest_of_the_call(sb: ScriptBench) -> None:
    conn = await sb.connection()
    outcome, host = await sb.run("""
        async def fetch_data(nango):
            records = [{"id": i} for i in range(12_000)]
            records[7_000] = {"name": "no id"}
            await nango.batch_save(records, "Chunked")
    """, conn)
    assert not outcome.ok and "no usable 'id'" in outcome.error["message"]
    assert host.progress.models["Chunked"]["added"] == 5_000  # chunk 1 saved, chunk 2 rejected, chunk 3 refused
