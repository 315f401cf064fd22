"""Red team, issue 16 point 1: requests to internal services through the worker or the API (SSRF).

Through the real path (deployed sync -> schedule -> worker -> sandboxed child -> ScriptHost ->
providers/proxy.py) and through the API's `/proxy`: a script or a caller aims `absolute_url` /
`base_url_override` / `Base-Url-Override` at the Temporal frontend of the test stack, the cloud
metadata address, a private address, a host name that resolves to loopback, or a provider endpoint
that redirects to loopback. Each is refused with an error naming the host and the setting that
would allow it; no secret shows anywhere; a normal sync succeeds right after. The connection's
credentials never reach an allowed host that is not the provider's. Unit tests cover the address
classification and the allow-list grammar.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from orchestrator.authoring.compile import compile_project
from orchestrator.client import ApiError
from orchestrator.providers.egress import (
    AllowList,
    Egress,
    EgressRefused,
    PolicyResolver,
    address_problem,
    entry_for,
    internal_entries,
    parse_allow_list,
    parse_entry,
)
from tests.conftest import EXAMPLES, GithubSetup, Stack, allow_egress, eventually, setup_github, wait_for_job

TOKEN = "demo-token"   # the connection's access token (setup below)


# ---- unit: addresses and allow-lists --------------------------------------------------------------

@pytest.mark.parametrize(("address", "problem"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),   # IPv4-mapped
    ("64:ff9b::a00:1", "private"),                                              # NAT64 of 10.0.0.1
    ("8.8.8.8", None), ("140.82.112.6", None), ("2606:4700::1111", None),
])
def test_address_classification(address: str, problem: str | None) -> None:
    found = address_problem(ipaddress.ip_address(address))
    assert (found is None) if problem is None else (found is not None and found.startswith(problem)), found


def test_allow_list_grammar() -> None:
    allow = parse_allow_list(" api.example.com, *.corp.example:443,10.0.0.0/8 ,127.0.0.1:8080, [::1]:9000, fd00::5,"
                             "Upper.Example.COM., 192.168.1.7")
    assert [e.text for e in allow.entries][:3] == ["api.example.com", "*.corp.example:443", "10.0.0.0/8"]
    # names: exact, wildcard (subdomains only, this port only), case and trailing dot normalized
    assert allow.names("api.example.com", 443) and allow.names("api.example.com", 8443)
    assert allow.names("git.corp.example", 443) and not allow.names("git.corp.example", 80)
    assert not allow.names("corp.example", 443) and not allow.names("evil-api.example.com", 443)
    assert allow.names("upper.example.com", 80)
    # addresses and blocks name IP-literal hosts in them, with the port when one is given
    assert allow.names("10.9.8.7", 80) and allow.names("127.0.0.1", 8080) and not allow.names("127.0.0.1", 7233)
    assert allow.names("::1", 9000) and not allow.names("::1", 9001) and allow.names("fd00::5", 1)
    # what opens an internal address: the operator naming its block/address, or naming the host itself
    assert allow.covers("anything", 80, ipaddress.ip_address("10.1.1.1"))
    assert allow.covers("anything", 80, ipaddress.ip_address("::ffff:10.1.1.1"))
    assert allow.covers("api.example.com", 443, ipaddress.ip_address("127.0.0.1"))
    assert not allow.covers("other.example.com", 443, ipaddress.ip_address("127.0.0.1"))
    assert not allow.covers("x", 7233, ipaddress.ip_address("127.0.0.1"))
    assert parse_allow_list("") == AllowList() and parse_allow_list(None) == AllowList()
    assert parse_entry("[::1]").port is None and parse_entry("[2001:db8::1]:443").port == 443


@pytest.mark.parametrize("bad", ["http://api.example.com", "10.0.0.0/33", "host:0", "host:99999", "host:x",
                                 "bad_host!", "a b", "[::1]x", "::1:8080:zz/"])
def test_allow_list_rejects_bad_entries(bad: str) -> None:
    with pytest.raises(ValueError, match="egress allow entry"):
        parse_entry(bad)


def test_internal_entries_are_named_for_integration_lists() -> None:
    allow = parse_allow_list(["api.example.com", "8.8.8.0/24", "10.0.0.0/8", "127.0.0.1:80", "0.0.0.0/0"])
    assert internal_entries(allow) == ["10.0.0.0/8", "127.0.0.1:80", "0.0.0.0/0"]


async def test_policy_host_and_address_checks() -> None:
    async with Egress("127.0.0.1:8080,ops.internal") as egress:
        policy = egress.policy("https://api.github.com/v3", ["files.example.com"], "github")
        policy.check("https://api.github.com/repos")          # the provider's host
        policy.check("https://files.example.com/x")           # the integration's list (a public name)
        policy.check("http://127.0.0.1:8080/x")                # listed by the operator
        assert policy.is_provider("https://API.github.com:443/x") and not policy.is_provider("http://api.github.com/")
        assert not policy.is_provider("https://files.example.com/x")
        for url, words in [
            ("http://127.0.0.1:7233/api", ["127.0.0.1:7233", "loopback addresses are not allowed", "EGRESS_ALLOW"]),
            ("http://169.254.169.254/latest", ["169.254.169.254:80", "link-local", "EGRESS_ALLOW"]),
            ("http://[::1]:80/", ["[::1]:80", "loopback"]),
            ("http://10.0.0.1/", ["10.0.0.1:80", "private addresses"]),
            ("https://evil.example.net/", ["evil.example.net:443", "not the provider's host (api.github.com:443)",
                                           "EGRESS_ALLOW", "PATCH /integrations/github"]),
            ("file:///etc/passwd", ["only http and https"]),
        ]:
            with pytest.raises(EgressRefused) as exc:
                policy.check(url)
            assert all(w in str(exc.value) for w in words), (url, str(exc.value))


async def test_resolver_checks_every_resolved_address() -> None:
    """A name is judged by what it resolves to (the check the connector's connection then uses)."""
    resolver = PolicyResolver(lambda: parse_allow_list("localhost:9999"))
    with pytest.raises(EgressRefused, match=r"localhost:80 refused \(localhost resolves to .*\): loopback"):
        await resolver.resolve("localhost", 80)
    assert await resolver.resolve("localhost", 9999)   # the operator named this host and port
    await resolver.close()


# ---- the real path ------------------------------------------------------------------------------

ATTACK = '''
from orchestrator.sdk import NangoError

ATTEMPTS = {attempts!r}


async def fetch_data(nango):
    for name, request in ATTEMPTS:
        try:
            response = await nango.get(**request)
            await nango.log(f"LEAK {{name}}: {{response.status}} {{str(response.data)[:200]}}")
        except NangoError as exc:
            await nango.log(f"{{name}}: {{exc.type}}: {{exc}}")
    await nango.get(**ATTEMPTS[0][1])   # not caught: the job fails with the refusal


async def on_webhook(nango, payload):
    pass
'''


def _attempts(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    temporal = stack.settings.temporal_address
    temporal_port = temporal.rsplit(":", 1)[1]
    return [
        ("temporal", {"endpoint": "/api/v1/namespaces", "absolute_url": f"http://{temporal}/api/v1/namespaces"}),
        ("metadata", {"endpoint": "/", "absolute_url": "http://169.254.169.254/latest/meta-data/iam/"}),
        ("private", {"endpoint": "/", "absolute_url": "http://10.0.0.1/admin"}),
        # the same address and port as Temporal's, by a name (the operator opened only the demo's port)
        ("localhost", {"endpoint": "/", "absolute_url": f"http://localhost:{temporal_port}/api/v1/namespaces"}),
        ("override", {"endpoint": "/api/v1/namespaces", "base_url_override": f"http://{temporal}"}),
        ("redirect", {"endpoint": "/redirect-to", "params": {"url": f"http://{temporal}/api/v1/namespaces"}}),
        ("redirect307", {"endpoint": "/redirect-to", "params": {
            "url": "http://169.254.169.254/latest/meta-data/", "status_code": "307"}}),
        ("unlisted", {"endpoint": "/", "absolute_url": "https://unlisted.example.net/"}),
    ]


async def _setup(stack: Stack, folder: Path, *, egress_allow: list[str] | None = None) -> GithubSetup:
    """setup_github, with the integration's egress_allow set before the connection (and its first run)."""
    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"{env}/repo", 2)
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, folder))
        if egress_allow is not None:
            await api.request("PATCH", "/integrations/github", json={"egress_allow": egress_allow})
        await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": TOKEN},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
    return GithubSetup(env, key, repo, "conn-1")


async def _everything_stored(stack: Stack, env: str) -> str:
    """Every job row, log line and record of the environment, as one text to search for secrets."""
    async with stack.pool.acquire() as conn:
        jobs = await conn.fetch("SELECT j.* FROM jobs j JOIN environments e ON e.id = j.environment_id"
                                " WHERE e.name = $1", env)
        logs = await conn.fetch("SELECT l.* FROM script_logs l JOIN jobs j ON j.id = l.job_id"
                                " JOIN environments e ON e.id = j.environment_id WHERE e.name = $1", env)
        records = await conn.fetch("SELECT r.body FROM records r JOIN environments e ON e.id = r.environment_id"
                                   " WHERE e.name = $1", env)
    return orjson.dumps([dict(r) for r in [*jobs, *logs, *records]], default=str).decode()


async def _logs(stack: Stack, job_id: int) -> list[str]:
    async with stack.pool.acquire() as conn:
        return [r["message"] for r in await conn.fetch(
            "SELECT message FROM script_logs WHERE job_id = $1 ORDER BY id", job_id)]


async def _normal_sync_succeeds(stack: Stack, gh: GithubSetup, previous_jobs: int) -> None:
    async with stack.api(gh.key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
        await api.request("POST", "/sync/trigger", json={
            "syncs": ["issues"], "provider_config_key": "github", "connection_id": gh.connection_id})
    jobs = await wait_for_job(stack, gh, count=previous_jobs + 1, status="success")
    assert jobs[0]["status"] == "success"
    assert any(line.startswith("saved ") for line in await _logs(stack, jobs[0]["id"]))   # it reached the provider


async def test_a_script_cannot_reach_internal_services(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(ATTACK.format(attempts=_attempts(stack)))
    # "localhost" is on the integration's list (a tenant may list names): its loopback address is still refused
    gh = await _setup(stack, folder, egress_allow=["localhost"])
    jobs = await wait_for_job(stack, gh, status="failed")
    temporal = stack.settings.temporal_address
    temporal_port = temporal.rsplit(":", 1)[1]
    error = jobs[0]["error"]
    assert f"egress to {temporal} refused" in error and "loopback addresses are not allowed" in error, error
    assert "EGRESS_ALLOW" in error

    logs = await _logs(stack, jobs[0]["id"])
    by_name = {line.split(":", 1)[0]: line for line in logs if not line.startswith("egress to")}
    assert not [line for line in logs if line.startswith("LEAK")], logs
    expected = {
        "temporal": [f"egress_refused: egress to {temporal} refused", "loopback", "EGRESS_ALLOW"],
        "metadata": ["egress to 169.254.169.254:80 refused", "link-local", "metadata", "EGRESS_ALLOW"],
        "private": ["egress to 10.0.0.1:80 refused", "private addresses", "EGRESS_ALLOW"],
        "localhost": [f"egress to localhost:{temporal_port} refused (localhost resolves to", "loopback",
                      "EGRESS_ALLOW"],
        "override": [f"egress to {temporal} refused", "loopback"],
        "redirect": [f"egress to {temporal} refused", "loopback"],
        "redirect307": ["egress to 169.254.169.254:80 refused", "link-local"],
        "unlisted": ["egress to unlisted.example.net:443 refused", "not the provider's host",
                     "EGRESS_ALLOW", "egress_allow list (PATCH /integrations/github)"],
    }
    for name, words in expected.items():
        line = by_name.get(name, "")
        assert all(w in line for w in words), (name, line)
    # the platform's own log line of each refusal is in the job too (seen even when a script swallows it)
    assert sum(line.startswith("egress to") for line in logs) >= len(expected)
    # the redirecting provider was asked (with credentials: it is the provider), its target never was
    assert any(r["path"] == "/redirect-to" and r["auth"] for r in stack.demo.requests)

    stored = await _everything_stored(stack, gh.env)
    for secret in (TOKEN, gh.key, stack.settings.encryption_key.get_secret_value()):
        assert secret not in stored
    await _normal_sync_succeeds(stack, gh, previous_jobs=1)


@pytest.fixture
async def sink() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A tiny server on loopback that records the headers and query of what reaches it."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({**{k.lower(): v for k, v in request.headers.items()}, "?": request.query_string})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


SINK_SCRIPT = '''
async def fetch_data(nango):
    direct = await nango.get(endpoint="/direct", absolute_url="{sink}/direct")
    override = await nango.get(endpoint="/override", base_url_override="{sink}")
    redirected = await nango.get(endpoint="/redirect-to", params={{"url": "{sink}/redirected"}})
    await nango.log(f"sink answered {{direct.status}} {{override.status}} {{redirected.status}}")


async def on_webhook(nango, payload):
    pass
'''


async def test_credentials_never_reach_an_allowed_host_that_is_not_the_providers(
        stack: Stack, tmp_path: Path, sink: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = sink
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(SINK_SCRIPT.format(sink=url))
    async with allow_egress(stack, url):   # the operator lists the loopback server
        gh = await _setup(stack, folder)
        jobs = await wait_for_job(stack, gh, status="success")
    assert "sink answered 200 200 200" in await _logs(stack, jobs[0]["id"])
    assert len(seen) == 3
    for headers in seen:
        assert "authorization" not in headers and TOKEN not in orjson.dumps(headers).decode(), headers
    # the provider, asked for the redirect, got the credentials; the redirect's target did not
    assert any(r["path"] == "/redirect-to" and r["auth"] for r in stack.demo.requests)
    await _normal_sync_succeeds(stack, gh, previous_jobs=1)


async def test_the_proxy_cannot_reach_internal_services(stack: Stack) -> None:
    gh = await _setup(stack, EXAMPLES, egress_allow=["localhost"])
    await wait_for_job(stack, gh)
    temporal = stack.settings.temporal_address
    temporal_port = temporal.rsplit(":", 1)[1]
    async with stack.api(gh.key) as api:
        for override, endpoint, words in [
            (f"http://{temporal}", "/api/v1/namespaces", [f"egress to {temporal} refused", "loopback"]),
            ("http://169.254.169.254", "/latest/meta-data/", ["169.254.169.254:80 refused", "link-local"]),
            ("http://10.0.0.1", "/", ["10.0.0.1:80 refused", "private"]),
            (f"http://localhost:{temporal_port}", "/api/v1/namespaces", [
                f"localhost:{temporal_port} refused (localhost resolves to", "loopback"]),
            ("https://unlisted.example.net", "/", ["unlisted.example.net:443 refused", "not the provider's host"]),
            (None, f"/redirect-to?url=http://{temporal}/api/v1/namespaces", [f"egress to {temporal} refused"]),
        ]:
            with pytest.raises(ApiError) as exc:
                await api.proxy("GET", endpoint, integration="github", connection_id="conn-1",
                                base_url_override=override)
            assert exc.value.status == 403 and exc.value.code == "egress_refused", exc.value
            assert all(w in exc.value.message for w in words), exc.value.message
            assert "EGRESS_ALLOW" in exc.value.message
            assert TOKEN not in orjson.dumps(exc.value.body).decode() and gh.key not in exc.value.message
        # a normal proxy call right after works, with the connection's credentials
        user = await api.proxy("GET", "/user", integration="github", connection_id="conn-1")
        assert user.status == 200 and user.json()["login"]


async def test_an_integrations_list_holds_public_hosts_only(stack: Stack) -> None:
    gh = await _setup(stack, EXAMPLES)
    async with stack.api(gh.key) as api:
        for bad in (["10.0.0.0/8"], ["127.0.0.1:7233"], ["169.254.169.254"], ["http://x.example.com"]):
            err = await api.request("PATCH", "/integrations/github", json={"egress_allow": bad}, ok=(400, 422))
            assert bad[0] in orjson.dumps(err).decode(), err
        got = await api.request("PATCH", "/integrations/github", json={"egress_allow": [" api.example.com ", ""]})
        assert got["data"]["egress_allow"] == ["api.example.com"]
        got = await api.request("GET", "/integrations/github")
        assert got["data"]["egress_allow"] == ["api.example.com"]
        got = await api.request("PATCH", "/integrations/github", json={"egress_allow": []})
        assert got["data"]["egress_allow"] == []


def test_entry_for_names_exactly_one_origin() -> None:
    assert entry_for("http://127.0.0.1:8080/x") == "127.0.0.1:8080"
    assert entry_for("https://API.example.com") == "api.example.com:443"
    assert entry_for("http://[::1]:9/") == "[::1]:9"


# ---- requests the platform sends on a tenant's say-so: token endpoints and result webhooks ----------

async def test_a_token_url_aimed_inside_is_refused_not_called(stack: Stack) -> None:
    """A connection's token_url is the tenant's to set: a refresh must not become a request to Temporal."""
    gh = await setup_github(stack, issues=1)
    inside = f"http://{stack.settings.temporal_address}/api/v1/namespaces"
    async with stack.api(gh.key) as api:
        await api.update_integration("github", client_id=stack.demo.client_id, client_secret=stack.demo.client_secret)
        issued = stack.demo.issue_token(ttl_seconds=60)
        await api.create_connection("github", "inside", {"type": "OAUTH2", "access_token": issued["access_token"],
                                                         "refresh_token": issued["refresh_token"], "expires_in": 60},
                                    connection_config={"base_url": stack.provider_url, "token_url": inside})
        err = await api.request("GET", "/connections/inside", params={"provider_config_key": "github"},
                                ok=(400, 403))
    message = err["error"]["message"]
    assert "refused" in message and "EGRESS_ALLOW" in message, message
    assert issued["refresh_token"] not in str(err) and gh.key not in str(err)


async def test_a_result_webhook_aimed_inside_is_refused_once_and_recorded(stack: Stack) -> None:
    gh = await setup_github(stack, issues=1)
    await wait_for_job(stack, gh)
    inside = f"http://{stack.settings.temporal_address}/api/v1/namespaces"
    async with stack.api(gh.key) as api:
        await api.update_environment(webhook_url=inside, webhook_secret="whsec-inside")
        stack.demo.update_issue(gh.repo, 1, title="changed")  # a run with changes notifies
        await api.trigger_sync("github", ["issues"], "conn-1")
        jobs = await wait_for_job(stack, gh, count=2)

        async def recorded() -> dict[str, Any]:
            job = await api.get_job(jobs[0]["id"])
            assert job["notifications"], job
            return job
        job = await eventually(recorded, timeout=30)
    attempts = job["notifications"]
    assert len(attempts) == 1 and attempts[0]["status"] is None, attempts  # refused: never retried
    assert "refused" in attempts[0]["error"] and "EGRESS_ALLOW" in attempts[0]["error"]
