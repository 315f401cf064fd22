"""OAuth 1.0a, TBA, APP and JWT connections end to end (issue 19): made through the API and the connect flow,
used by `/proxy` and by scripts, against the demo provider, which verifies every signature with oauthlib and
joserfc (orchestrator/demo_provider/auth_modes.py) while the platform signs with its own code."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.client.api import NangoClient
from orchestrator.control import refresher
from orchestrator.crypto import Sealer
from orchestrator.providers.catalog import Provider
from orchestrator.runs.testing import ScriptBench
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import AppCredentials, JwtCredentials, OAuth1Credentials, TbaCredentials
from tests.conftest import Stack
from tests.test_sdk_helper import echo, logs_of, ok, sb  # noqa: F401  (the script bench and the echo API it needs)


def rsa_pem() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pems(key)


def ec_pem() -> tuple[str, str]:
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def _pems(key: Any) -> tuple[str, str]:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


async def _provider(api: NangoClient, **fields: Any) -> None:
    await api.request("POST", "/providers", json=fields)


def _last_call(stack: Stack, path: str) -> dict[str, Any]:
    return [r for r in stack.demo.requests if r["path"] == path][-1]


async def _follow(browser: aiohttp.ClientSession, url: str) -> str:
    async with browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        return resp.headers["Location"]


async def _connections(api: NangoClient, integration: str) -> list[str]:
    return sorted(c["connection_id"] for c in await api.list_connections() if c["provider_config_key"] == integration)


# ---- OAuth 1.0a ------------------------------------------------------------------------------------

async def demo_oauth1(stack: Stack, api: NangoClient) -> None:
    """The demo provider's OAuth 1.0a as a custom provider, and integration 'o1' on it with the demo's consumer."""
    p = stack.provider_url
    await _provider(api, name="demo-oauth1", display_name="Demo (OAuth 1.0a)", auth_mode="OAUTH1",
                    request_url=f"{p}/oauth1/request_token", authorization_url=f"{p}/oauth1/authorize",
                    token_url=f"{p}/oauth1/access_token", signature_method="HMAC-SHA1", base_url=p)
    await api.create_integration("o1", "demo-oauth1", client_id=stack.demo.client_id,
                                 client_secret=stack.demo.client_secret)


async def test_oauth1_three_legged_flow_signs_every_request(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    p = stack.provider_url
    async with stack.api(key) as api:
        await demo_oauth1(stack, api)
        session = await api.create_connect_session(allowed_integrations=["o1"], connection_id="tw-user")
        async with aiohttp.ClientSession() as browser:
            to_provider = await _follow(browser, session["connect_url"])
            assert to_provider.startswith(f"{p}/oauth1/authorize?oauth_token=")
            callback = await _follow(browser, to_provider)
            q = parse_qs(urlsplit(callback).query)
            assert q["oauth_verifier"] and q["state"]
            async with browser.get(callback) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["connection_id"] == "tw-user"
            async with browser.get(callback) as resp:   # the state (and the verifier) are single use
                assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_state"

        creds = (await api.get_connection("o1", "tw-user"))["credentials"]
        assert creds["type"] == "OAUTH1" and creds["oauth_token"] and creds["oauth_token_secret"]
        assert "oauth_token_secret" not in creds["raw"] and creds["raw"]["screen_name"]
        assert await api.get_token("o1", "tw-user") == {"oAuthToken": creds["oauth_token"],
                                                        "oAuthTokenSecret": creds["oauth_token_secret"]}
        headers = {"Connection-Id": "tw-user", "Provider-Config-Key": "o1"}
        user = await api.request("GET", "/proxy/user", headers=headers, params={"q": "a b~c", "x": "1"})
        assert user["login"] and _last_call(stack, "/user")["auth_scheme"] == "oauth1"
        # a form-encoded body is part of the signature (RFC 5849 3.4.1.3): the provider verifies it with the body
        repo = stack.demo.add_repo(f"o1/{key[-6:]}", 1)
        created = await api.request("POST", f"/proxy/repos/{repo}/issues", data=b"title=a+b~c&body=%E2%9C%93",
                                    headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
        assert created["title"] == "a b~c" and created["body"] == "\u2713"
        assert _last_call(stack, f"/repos/{repo}/issues")["auth_scheme"] == "oauth1"

        # a consumer the provider does not know: the request-token step fails clearly, nothing is stored
        await api.update_integration("o1", client_secret="not-the-secret")
        session = await api.create_connect_session(allowed_integrations=["o1"], connection_id="bad")
        async with aiohttp.ClientSession() as browser, browser.get(session["connect_url"],
                                                                  allow_redirects=False) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
        assert error["code"] == "token_exchange_failed" and "request token" in error["message"]
        assert "not-the-secret" not in error["message"]
        # the user refuses at the provider: the callback says so and nothing is stored
        await api.update_integration("o1", client_secret=stack.demo.client_secret)
        stack.demo.deny_next_authorization = True
        session = await api.create_connect_session(allowed_integrations=["o1"], connection_id="denied")
        async with aiohttp.ClientSession() as browser:
            callback = await _follow(browser, await _follow(browser, session["connect_url"]))
            async with browser.get(callback) as resp:
                assert resp.status == 400 and (await resp.json())["error"]["code"] == "authorization_failed"
        assert await _connections(api, "o1") == ["tw-user"]


# ---- TBA -------------------------------------------------------------------------------------------

async def test_tba_connections_sign_with_hmac_sha256_and_the_account_realm(stack: Stack, tmp_path: Path) -> None:
    _env, key = await stack.new_environment()
    async with stack.api(key) as api:
        await _provider(api, name="demo-tba", display_name="Demo (TBA)", auth_mode="TBA", base_url=stack.provider_url,
                        connection_config={"accountId": "the account id"})
        await api.create_integration("ns", "demo-tba", client_id=stack.demo.client_id,
                                     client_secret=stack.demo.client_secret)
        token = stack.demo.auth.add_tba_token("1234567_SB1")
        made = await api.create_connection("ns", "acme", {"type": "TBA", "token_id": token["token_id"],
                                                          "token_secret": token["token_secret"]},
                                           connection_config={"accountId": "1234567-sb1"})
        assert made["credentials"] == {"type": "TBA", "token_id": token["token_id"],
                                       "token_secret": token["token_secret"], "config_override": {}}
        headers = {"Connection-Id": "acme", "Provider-Config-Key": "ns"}
        assert (await api.request("GET", "/proxy/user", headers=headers))["login"]
        assert _last_call(stack, "/user")["auth_scheme"] == "tba"

        # the realm is the account: a connection naming another account is refused by the provider
        await api.create_connection("ns", "wrong-account", {"type": "TBA", "token_id": token["token_id"],
                                                            "token_secret": token["token_secret"]},
                                    connection_config={"accountId": "7654321"})
        refused = await api.request("GET", "/proxy/user", ok=(401,),
                                    headers={"Connection-Id": "wrong-account", "Provider-Config-Key": "ns"})
        assert "realm" in refused["message"]

        # a connection with its own consumer (config_override) signs with that one
        stack.demo.auth.tba_consumers["other-consumer"] = "other-consumer-secret"
        own = stack.demo.auth.add_tba_token("1234567_SB1", consumer_key="other-consumer")
        await api.create_connection("ns", "own-consumer", {
            "type": "TBA", "token_id": own["token_id"], "token_secret": own["token_secret"],
            "config_override": {"client_id": "other-consumer", "client_secret": "other-consumer-secret"}},
            connection_config={"accountId": "1234567-sb1"})
        assert (await api.request("GET", "/proxy/user", headers={"Connection-Id": "own-consumer",
                                                                 "Provider-Config-Key": "ns"}))["login"]
        # bad input names the field and never echoes the secret
        bad = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "ns", "connection_id": "broken",
            "credentials": {"type": "TBA", "token_secret": "s3cr3t-value"}})
        assert "credentials.token_id" in bad["error"]["message"] and "s3cr3t-value" not in bad["error"]["message"]
        # from a page (the frontend SDK's auth() with TBA credentials): `params[k]` fills the keys the provider
        # declares, never base_url, which would send the signed requests wherever the end user liked
        session = await api.create_connect_session(allowed_integrations=["ns"])
        page = await api.request("POST", "/auth/tba/ns", params={
            "connect_session_token": session["token"], "params[accountId]": "1234567-sb1",
            "params[base_url]": "http://attacker.example"}, json={"token_id": token["token_id"],
                                                                  "token_secret": token["token_secret"]})
        from_page = await api.get_connection("ns", page["connectionId"])
        assert from_page["connection_config"] == {"accountId": "1234567-sb1"}
        assert (await api.request("GET", "/proxy/user", headers={"Connection-Id": page["connectionId"],
                                                                 "Provider-Config-Key": "ns"}))["login"]
        # the CLI, as the README shows it: Nango's credential shape from a file, the account from --config
        creds_file = tmp_path / "tba.json"
        creds_file.write_text(json.dumps({"type": "TBA", "token_id": token["token_id"],
                                          "token_secret": token["token_secret"]}))
        result = await asyncio.to_thread(CliRunner().invoke, app, [
            "connections", "create", "ns", "cli", "--file", str(creds_file), "--config", "accountId=1234567-sb1"],
            env={"NANGO_SECRET_KEY": key, "NANGO_HOSTPORT": stack.api_url})
        assert result.exit_code == 0 and "created connection ns/cli" in result.output, result.output
        assert (await api.request("GET", "/proxy/user", headers={"Connection-Id": "cli",
                                                                 "Provider-Config-Key": "ns"}))["login"]
        assert len(await _connections(api, "ns")) == 5


# ---- APP -------------------------------------------------------------------------------------------

async def test_github_style_app_installs_mints_and_remints_installation_tokens(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    p = stack.provider_url
    private, public = rsa_pem()
    app_id = "app-" + key[-8:]
    stack.demo.auth.add_app(app_id, public, f"demo-app-{key[-6:]}", f"{stack.api_url}/oauth/callback")
    async with stack.api(key) as api:
        await _provider(api, name="demo-app", display_name="Demo App", auth_mode="APP", base_url=p,
                        authorization_url="${connectionConfig.appPublicLink}/installations/new",
                        token_url=f"{p}/app/installations/${{connectionConfig.installation_id}}/access_tokens",
                        connection_config={"appPublicLink": "the app's page", "installation_id": "installation"})
        await api.create_integration("gh-app", "demo-app")
        bad_key = await api.request("PATCH", "/integrations/gh-app", ok=(400,), json={"credentials": {
            "type": "APP", "app_id": app_id, "app_link": f"{p}/apps/demo-app-{key[-6:]}",
            "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"}})
        assert bad_key["error"]["code"] == "invalid_credentials" and "private_key" in bad_key["error"]["message"]
        await api.request("PATCH", "/integrations/gh-app", json={"credentials": {
            "type": "APP", "app_id": app_id, "app_link": f"{p}/apps/demo-app-{key[-6:]}", "private_key": private}})
        shown = (await api.request("GET", "/integrations/gh-app", params={"include": "credentials"}))["data"]
        assert shown["credentials"]["app_id"] == app_id and shown["credentials"]["app_link"].endswith(key[-6:])

        stack.demo.token_ttl_seconds = 600   # installation tokens that come due soon, for the refresher below
        try:
            session = await api.create_connect_session(allowed_integrations=["gh-app"], connection_id="org")
            async with aiohttp.ClientSession() as browser:
                install = await _follow(browser, session["connect_url"])
                assert install.startswith(f"{p}/apps/demo-app-{key[-6:]}/installations/new?state=")
                async with browser.get(await _follow(browser, install)) as resp:
                    assert resp.status == 200, await resp.text()
        finally:
            stack.demo.token_ttl_seconds = 3600
        # the first token expires within the refresh margin: the refresher mints another with a new app JWT
        async with stack.platform() as platform:
            assert (await refresher.refresh_due(platform))["refreshed"] >= 1
        conn = await api.get_connection("gh-app", "org")
        creds = conn["credentials"]
        assert creds["type"] == "APP" and stack.demo.token_valid(creds["access_token"])
        assert datetime.fromisoformat(creds["expires_at"]) - datetime.now(UTC) > timedelta(minutes=50)
        assert creds["raw"]["token"] == creds["access_token"] and conn["connection_config"]["installation_id"]
        headers = {"Connection-Id": "org", "Provider-Config-Key": "gh-app"}
        assert (await api.request("GET", "/proxy/user", headers=headers))["login"]
        assert _last_call(stack, "/user")["auth_scheme"] == "bearer"

        # an end user who names another customer's installation at the callback instead of installing: refused
        victim = stack.demo.auth.install(app_id)
        stack.demo.auth.installed_at[victim] -= 3600  # installed an hour ago, by someone else
        session = await api.create_connect_session(allowed_integrations=["gh-app"], connection_id="thief")
        async with aiohttp.ClientSession() as browser:
            install = await _follow(browser, session["connect_url"])
            state = parse_qs(urlsplit(install).query)["state"][0]
            async with browser.get(f"{stack.api_url}/oauth/callback", allow_redirects=False,
                                   params={"state": state, "installation_id": str(victim)}) as resp:
                assert resp.status == 403, await resp.text()
                refused = await resp.json()
        assert refused["error"]["code"] == "installation_not_from_this_flow", refused
        assert await _connections(api, "gh-app") == ["org"]

        # without the browser: an installation id the app already has
        installation = stack.demo.auth.install(app_id)
        made = await api.create_connection("gh-app", "org2", {"type": "APP"},
                                           connection_config={"installation_id": str(installation)})
        assert stack.demo.token_valid(made["credentials"]["access_token"])
        # an installation the provider does not know: a clear error, nothing stored
        err = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "gh-app", "connection_id": "ghost", "credentials": {"type": "APP"},
            "connection_config": {"installation_id": "999"}})
        assert err["error"]["code"] == "token_request_refused" and "Not Found" in err["error"]["message"]
        assert await _connections(api, "gh-app") == ["org", "org2"]


# ---- JWT -------------------------------------------------------------------------------------------

async def test_jwt_sent_directly_and_exchanged_for_a_token(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    p = stack.provider_url
    es_private, es_public = ec_pem()
    kid = "K" + key[-8:]
    stack.demo.auth.add_jwt_key(kid, "ES256", es_public, issuer="issuer-1", audience="appstoreconnect-v1")
    async with stack.api(key) as api:
        # App Store Connect style: the signed JWT is the token
        await _provider(api, name="demo-jwt", display_name="Demo (JWT)", auth_mode="JWT", base_url=p,
                        credentials={"issuerId": "issuer", "privateKeyId": "key id", "privateKey": "PEM"},
                        token={"signing_key": "${credentials.privateKey}", "expires_in_ms": 900_000,
                               "header": {"alg": "ES256", "kid": "${credentials.privateKeyId}", "typ": "JWT"},
                               "payload": {"iss": "${credentials.issuerId}", "aud": "appstoreconnect-v1"}})
        await api.create_integration("asc", "demo-jwt")
        given = {"type": "JWT", "issuerId": "issuer-1", "privateKeyId": kid, "privateKey": es_private}
        made = await api.create_connection("asc", "store", given)
        token = made["credentials"]["token"]
        claims = jwt.decode(token, es_public, algorithms=["ES256"], audience="appstoreconnect-v1")
        assert claims["iss"] == "issuer-1" and jwt.get_unverified_header(token)["kid"] == kid
        assert timedelta(minutes=14) < datetime.fromisoformat(made["credentials"]["expires_at"]) - datetime.now(UTC)
        headers = {"Connection-Id": "store", "Provider-Config-Key": "asc"}
        assert (await api.request("GET", "/proxy/user", headers=headers))["login"]
        assert _last_call(stack, "/user")["auth_scheme"] == "jwt"
        # a malformed key, a missing field: clear errors naming the field, nothing stored
        bad = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "asc", "connection_id": "bad-key",
            "credentials": {**given, "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}})
        assert bad["error"]["code"] == "invalid_credentials" and "credentials.privateKey" in bad["error"]["message"]
        missing = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "asc", "connection_id": "no-issuer",
            "credentials": {k: v for k, v in given.items() if k != "issuerId"}})
        assert "credentials.issuerId" in missing["error"]["message"]
        assert await _connections(api, "asc") == ["store"]

        # service-account style: the signed assertion is exchanged for an access token (RFC 7523)
        rs_private, rs_public = rsa_pem()
        stack.demo.auth.add_jwt_key("sa-" + key[-6:], "RS256", rs_public, issuer=f"svc-{key[-6:]}@demo")
        await _provider(api, name="demo-sa", display_name="Demo (service account)", auth_mode="JWT", base_url=p,
                        token_url=f"{p}/oauth2/jwt_token",
                        credentials={"client_email": "who", "private_key_id": "kid", "private_key": "PEM"},
                        token={"signing_key": "${credentials.private_key}", "expires_in_ms": 3_600_000,
                               "header": {"alg": "RS256", "kid": "${credentials.private_key_id}"},
                               "payload": {"iss": "${credentials.client_email}", "scope": "repo"}})
        await api.create_integration("sa", "demo-sa")
        default_ttl, stack.demo.token_ttl_seconds = stack.demo.token_ttl_seconds, 2
        try:
            made = await api.create_connection("sa", "robot", {
                "type": "JWT", "client_email": f"svc-{key[-6:]}@demo", "private_key_id": "sa-" + key[-6:],
                "private_key": rs_private})
        finally:
            stack.demo.token_ttl_seconds = default_ttl
        first = made["credentials"]["token"]
        assert stack.demo.token_valid(first) and made["credentials"]["raw"]["token_type"] == "Bearer"
        await asyncio.sleep(1.1)  # halfway through its life: due, a new assertion, a new token
        async with stack.platform() as platform:
            assert (await refresher.refresh_due(platform))["refreshed"] >= 1
        again = (await api.get_connection("sa", "robot"))["credentials"]
        assert again["token"] != first and stack.demo.token_valid(again["token"])
        assert datetime.fromisoformat(again["expires_at"]) - datetime.now(UTC) > timedelta(minutes=50)
        assert (await api.request("GET", "/proxy/user", headers={"Connection-Id": "robot",
                                                                 "Provider-Config-Key": "sa"}))["login"]
        # a token endpoint that answers HTML: a clear error, nothing stored
        stack.demo.fail_next(1, 200, 0, body="<html><body>Sign in</body></html>", content_type="text/html",
                             path_prefix="/oauth2/jwt_token")
        html = await api.request("POST", "/connections", ok=(400,), json={
            "provider_config_key": "sa", "connection_id": "html", "credentials": {
                "type": "JWT", "client_email": f"svc-{key[-6:]}@demo", "private_key_id": "sa-" + key[-6:],
                "private_key": rs_private}})
        assert "Sign in" in html["error"]["message"] and rs_private[40:80] not in html["error"]["message"]
        assert await _connections(api, "sa") == ["robot"]


# ---- in scripts --------------------------------------------------------------------------------------

async def _consumer(bench: ScriptBench, stack: Stack) -> None:
    """The bench's integration gets the demo's OAuth app as its OAuth 1.0 consumer."""
    sealer = Sealer(stack.settings.encryption_key_bytes())
    async with bench.pool.acquire() as conn:
        await integrations_repo.update_settings(conn, bench.integration_id, oauth_client_id=stack.demo.client_id,
                                                sealed_client_secret=sealer.seal(stack.demo.client_secret))


SCRIPT = """
async def run_action(nango, inp):
    me = await nango.get("/user")
    conn = await nango.get_connection()
    nango.log(f"credentials {conn['credentials']}")
    return {"login": me.data["login"], "token": await nango.get_token(), "type": conn["credentials"]["type"]}
"""


async def test_scripts_get_signed_requests_and_nangos_shapes_in_every_mode(sb: ScriptBench,  # noqa: F811
                                                                           stack: Stack) -> None:
    await _consumer(sb, stack)
    p = stack.provider_url
    base = {"base_url": p}
    tba = stack.demo.auth.add_tba_token("99_SB2")
    es_private, es_public = ec_pem()
    stack.demo.auth.add_jwt_key("script-key", "ES256", es_public)
    jwt_provider = Provider(name="demo-jwt", display_name="JWT", auth_mode="JWT", base_url=p, token={
        "signing_key": "${credentials.privateKey}", "header": {"alg": "ES256", "kid": "script-key"},
        "payload": {"iss": "scripts"}, "expires_in_ms": 600_000})
    installation = stack.demo.issue_token()["access_token"]
    cases: list[tuple[Any, dict[str, Any], Provider | None, str]] = [
        (TbaCredentials(token_id=tba["token_id"], token_secret=tba["token_secret"]), {**base, "accountId": "99-sb2"},
         Provider(name="demo-tba", display_name="TBA", auth_mode="TBA", base_url=p), "tba"),
        (JwtCredentials(privateKey=es_private), base, jwt_provider, "jwt"),
        (AppCredentials(access_token=installation, expires_at=datetime.now(UTC) + timedelta(hours=1)), base, None,
         "bearer"),
    ]
    for creds, config, provider, scheme in cases:
        conn = await sb.connection(creds, connection_config=config)
        outcome, host = await sb.run(SCRIPT, conn, kind="action", provider=provider)
        out = ok(outcome)
        assert out["login"] and out["type"] == creds.type, out
        assert _last_call(stack, "/user")["auth_scheme"] == scheme
        if creds.type == "JWT":   # Nango's getToken answers the credentials, the current signed token in them
            assert jwt.decode(out["token"]["token"], es_public, algorithms=["ES256"])["iss"] == "scripts"
        elif creds.type == "APP":
            assert out["token"]["access_token"] == installation
        else:
            assert out["token"]["token_id"] == tba["token_id"]
        logged = " ".join(e["message"] for e in await logs_of(sb, host.job_id))
        for secret in ("token_secret", "access_token", "privateKey"):   # masked in the run's logs, PEMs too
            for line in str(out["token"].get(secret) or "").splitlines():
                assert len(line) < 12 or line not in logged, f"{secret} leaked into the logs: {logged}"
        assert "***" in logged and stack.demo.client_secret not in logged

    # OAUTH1: an access token obtained from the demo's flow, used by a script
    oauth1_provider = Provider(name="demo-oauth1", display_name="OAuth1", auth_mode="OAUTH1", base_url=p,
                               request_url=f"{p}/oauth1/request_token", authorization_url=f"{p}/oauth1/authorize",
                               token_url=f"{p}/oauth1/access_token")
    access = stack.demo.auth.add_oauth1_token()
    conn = await sb.connection(OAuth1Credentials(oauth_token=access["oauth_token"],
                                                 oauth_token_secret=access["oauth_token_secret"]),
                               connection_config=base)
    outcome, _host = await sb.run(SCRIPT, conn, kind="action", provider=oauth1_provider)
    out = ok(outcome)
    assert stack.demo.client_secret not in json.dumps(out)   # the consumer signs on the trusted side only
    assert out["token"] == {"oAuthToken": access["oauth_token"], "oAuthTokenSecret": access["oauth_token_secret"]}
    assert _last_call(stack, "/user")["auth_scheme"] == "oauth1"
