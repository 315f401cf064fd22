"""Tokens kept fresh (issue 19): the background refresher renews OAuth2 tokens before they expire, one token call
per connection however many refreshers run, and a refresh the provider refuses marks the connection so that nothing
asks the provider again until it is reconnected."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.client.api import ApiError
from orchestrator.control import refresher
from orchestrator.platform import open_platform
from orchestrator.store import connections as connections_repo
from orchestrator.store.connections import refresh_due_at
from orchestrator.store.types import OAuth2Credentials
from tests.conftest import GithubSetup, Stack, eventually, setup_github


def _oauth(token: dict[str, Any], *, expires_in: int | None = None) -> dict[str, Any]:
    expires = datetime.now(UTC) + timedelta(seconds=token["expires_in"] if expires_in is None else expires_in)
    return {"type": "OAUTH2", "access_token": token["access_token"], "refresh_token": token["refresh_token"],
            "expires_at": expires.isoformat()}


@pytest.fixture
def token_calls(stack: Stack) -> Iterator[list[str]]:
    """The refresh tokens the demo provider's token endpoint was asked to redeem, in order."""
    calls: list[str] = []
    real = stack.demo.refresh

    def counting(refresh_token: str) -> dict[str, Any] | None:
        calls.append(refresh_token)
        return real(refresh_token)
    stack.demo.refresh = counting  # type: ignore[method-assign]
    yield calls
    stack.demo.refresh = real  # type: ignore[method-assign]


async def _oauth_github(stack: Stack) -> tuple[GithubSetup, dict[str, Any]]:
    """The example integration with the demo's OAuth client; the connection config its connections refresh with."""
    gh = await setup_github(stack)
    async with stack.api(gh.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret)
    return gh, {"base_url": stack.provider_url, "token_url": f"{stack.provider_url}/login/oauth/access_token"}


async def _sync_jobs(stack: Stack, env: str, connection_id: str) -> list[dict[str, Any]]:
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT j.status, j.error_type, j.error FROM jobs j JOIN connections c ON c.id = j.connection_pk"
            " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND c.connection_id = $2"
            " AND j.kind = 'sync' AND j.status <> 'running' ORDER BY j.id", env, connection_id)
    return [dict(r) for r in rows]


async def test_expiring_tokens_are_renewed_in_the_background_once_however_many_refreshers_run(
        stack: Stack, token_calls: list[str]) -> None:
    gh, config = await _oauth_github(stack)
    async with stack.api(gh.key) as api:
        due, later = stack.demo.issue_token(ttl_seconds=300), stack.demo.issue_token(ttl_seconds=7200)
        for cid, token in (("due", due), ("later", later)):
            await api.create_connection("github", cid, _oauth(token), connection_config=config,
                                        metadata={"repo": gh.repo})
        # two API processes' refreshers at once: the advisory lock lets one call the provider (the demo rotates
        # refresh tokens like GitHub, so a second call with the old one would be refused and mark the connection)
        async with stack.platform() as one, stack.platform() as two:
            tallies = await asyncio.gather(refresher.refresh_due(one), refresher.refresh_due(two))
        assert token_calls.count(due["refresh_token"]) == 1, (token_calls, tallies)
        assert later["refresh_token"] not in token_calls
        fresh = await api.get_connection("github", "due")
        assert fresh["errors"] == [] and fresh["credentials"]["access_token"] != due["access_token"]
        assert stack.demo.token_valid(fresh["credentials"]["access_token"])
        expires = datetime.fromisoformat(fresh["credentials"]["expires_at"]) - datetime.now(UTC)
        assert expires > timedelta(minutes=50)
        assert (await api.get_connection("github", "later"))["credentials"]["access_token"] == \
            later["access_token"]

        # the loop an API process runs: a token that comes due is renewed without anybody using it
        soon = stack.demo.issue_token(ttl_seconds=120)
        await api.create_connection("github", "soon", _oauth(soon), connection_config=config,
                                    metadata={"repo": gh.repo})
        settings = stack.settings.model_copy(update={"token_refresh_interval_s": 0.2})
        async with open_platform(settings, temporal=stack.client) as platform, refresher.running(platform):
            async def renewed() -> None:
                got = await api.get_connection("github", "soon")
                assert got["credentials"]["access_token"] != soon["access_token"]
            await eventually(renewed, timeout=20)
        assert token_calls.count(soon["refresh_token"]) == 1


async def test_a_refused_refresh_marks_the_connection_and_stops_its_runs_asking_until_reconnected(
        stack: Stack, token_calls: list[str]) -> None:
    gh, config = await _oauth_github(stack)
    async with stack.api(gh.key) as api:
        revoked = {**stack.demo.issue_token(ttl_seconds=60), "refresh_token": "ghr_revoked_by_the_user"}
        # already expired: its first sync run (started with the connection) must refresh, and is refused
        await api.create_connection("github", "revoked", _oauth(revoked, expires_in=-60), connection_config=config,
                                    metadata={"repo": gh.repo})

        async def first_run_failed() -> list[dict[str, Any]]:
            jobs = await _sync_jobs(stack, gh.env, "revoked")
            assert jobs and jobs[0]["status"] == "failed", jobs
            return jobs
        jobs = await eventually(first_run_failed, timeout=60)
        assert jobs[0]["error_type"] == "connection_refresh_failed"
        assert "bad_refresh_token" in jobs[0]["error"] and "reconnect" in jobs[0]["error"]
        listed = {c["connection_id"]: c for c in (await api.list_connections())}
        marked = listed["revoked"]["errors"]
        assert [e["type"] for e in marked] == ["auth"] and listed[gh.connection_id]["errors"] == []
        assert "bad_refresh_token" in marked[0]["message"] and marked[0]["failed_at"]
        # asking for its token says why there is none, without asking the provider again
        err = await api.request("GET", "/connections/revoked", params={"provider_config_key": "github"},
                                ok=(400,))
        assert err["error"]["code"] == "refresh_token_external_error" and "reconnect" in err["error"]["message"]

        # nothing asks the provider again: not the background refresher, not the next runs
        async with stack.platform() as platform:
            assert await refresher.refresh_due(platform) == {"refreshed": 0, "refused": 0, "transient": 0}
        await api.trigger_sync("github", ["issues"], "revoked")

        async def second_run_failed() -> None:
            assert len(await _sync_jobs(stack, gh.env, "revoked")) >= 2
        await eventually(second_run_failed, timeout=60)
        with pytest.raises(ApiError) as failed:  # an action too: refused at once, the provider not asked
            await api.trigger_action("github", "revoked", "create-issue", {"title": "t", "body": "b"})
        assert "could not be refreshed" in str(failed.value) and "reconnect" in str(failed.value)
        assert token_calls.count("ghr_revoked_by_the_user") == 1, token_calls

        # operators see it: the dashboard and `nango admin connections list`
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http.post(f"{stack.api_url}/dashboard/login", data={"secret": gh.key, "next": "/dashboard/"})
            async with http.get(f"{stack.api_url}/dashboard/connection?integration=github&connection=revoked") \
                    as resp:
                page = await resp.text()
            async with http.get(f"{stack.api_url}/dashboard/connections?integration=github") as resp:
                listing = await resp.text()
        assert "Token refresh refused" in page and "bad_refresh_token" in page
        assert listing.count("auth error") == 1
        env = {"DATABASE_URL": stack.settings.database_url.get_secret_value(),
               "TEMPORAL_ADDRESS": stack.settings.temporal_address,
               "ENCRYPTION_KEY": stack.settings.encryption_key.get_secret_value()}
        result = await asyncio.to_thread(CliRunner().invoke, app, [
            "admin", "connections", "list", "-e", gh.env, "--json"], env=env)
        assert result.exit_code == 0, result.output
        rows = {r["connection"]: r for r in json.loads(result.output)}
        assert "bad_refresh_token" in rows["revoked"]["refresh_error"]["message"]
        assert rows[gh.connection_id]["refresh_error"] is None

        # reconnecting (new credentials) clears the mark and the syncs run again
        await api.create_connection("github", "revoked", _oauth(stack.demo.issue_token()), connection_config=config,
                                    metadata={"repo": gh.repo})
        assert {c["connection_id"]: c for c in await api.list_connections()}["revoked"]["errors"] == []
        await api.trigger_sync("github", ["issues"], "revoked")

        async def synced() -> None:
            assert (await _sync_jobs(stack, gh.env, "revoked"))[-1]["status"] == "success"
        await eventually(synced, timeout=60)


def test_when_a_token_is_due() -> None:
    expires = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def due(**raw: Any) -> datetime | None:
        return refresh_due_at(OAuth2Credentials(access_token="t", expires_at=expires, raw=raw))
    assert due() == expires - timedelta(minutes=15)  # imported: the lifetime is not said
    assert due(expires_in=3600) == expires - timedelta(minutes=15)
    assert due(expires_in=1800) == expires - timedelta(minutes=15)
    assert due(expires_in=600) == expires - timedelta(minutes=5)
    assert due(expires_in="600") == expires - timedelta(minutes=5)  # as some providers send it
    for unusable in (0, -5, "soon", None, [600]):
        assert due(expires_in=unusable) == expires - timedelta(minutes=15), unusable
    assert refresh_due_at(OAuth2Credentials(access_token="t")) is None
    earliest = datetime.min.replace(tzinfo=UTC)  # a provider's expires_at of 0001-01-01T00:00:00Z
    assert refresh_due_at(OAuth2Credentials(access_token="t", expires_at=earliest)) == earliest


async def test_a_token_that_lives_ten_minutes_is_renewed_halfway_not_on_every_use(
        stack: Stack, token_calls: list[str]) -> None:
    """Snowflake's OAuth tokens live 10 minutes. Due 15 minutes before expiry, such a token was due again as soon
    as it was issued: every proxy call, GET /connection and refresher pass asked the provider for another."""
    gh, config = await _oauth_github(stack)
    default_ttl, stack.demo.token_ttl_seconds = stack.demo.token_ttl_seconds, 600
    try:
        async with stack.api(gh.key) as api:
            first = stack.demo.issue_token(ttl_seconds=60)
            await api.create_connection("github", "short", _oauth(first), connection_config=config,
                                        metadata={"repo": gh.repo})
            renewed = (await api.get_connection("github", "short"))["credentials"]  # a minute left: renewed
            assert renewed["access_token"] != first["access_token"] and token_calls == [first["refresh_token"]]
            for _ in range(3):
                again = await api.get_connection("github", "short")
                assert again["credentials"]["access_token"] == renewed["access_token"]
                resp = await api.proxy("GET", "/user", integration="github", connection_id="short")
                assert resp.status == 200
            async with stack.platform() as platform:
                assert (await refresher.refresh_due(platform))["refreshed"] == 0
            assert token_calls == [first["refresh_token"]]
            async with stack.pool.acquire() as conn:  # due halfway through its life, 5 minutes before expiry
                row = await conn.fetchrow(
                    "SELECT c.id, c.credentials_expires_at - c.credentials_refresh_at AS margin FROM connections c"
                    " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND c.connection_id = 'short'",
                    gh.env)
                assert abs(row["margin"] - timedelta(minutes=5)) < timedelta(seconds=2), row
                assert row["id"] not in await connections_repo.due_for_refresh(conn, 10_000)
                # a row an older release wrote during a rolling upgrade has no due time: 15 minutes before expiry
                await conn.execute("UPDATE connections SET credentials_refresh_at = NULL WHERE id = $1", row["id"])
                assert row["id"] in await connections_repo.due_for_refresh(conn, 10_000)
    finally:
        stack.demo.token_ttl_seconds = default_ttl
