"""The demo provider accepts OAuth 1.0a, NetSuite TBA, GitHub App and JWT credentials, and refuses bad ones.

Requests are signed here with oauthlib's Client and joserfc (the test side), so this checks the demo
provider, not the platform's signing code.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_PLAINTEXT, Client
from yarl import URL

from orchestrator.demo_provider import DemoState, create_app

CLIENT_ID, CLIENT_SECRET = "demo-client-id", "demo-client-secret"
FORM = "application/x-www-form-urlencoded"
ISSUES = "/repos/demo/hello-world/issues"


@asynccontextmanager
async def provider(state: DemoState | None = None) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(state or DemoState(seed_issues=3)))) as client:
        yield client


async def signed(client: TestClient, oauth: Client, method: str, path: str,
                 form: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    """Send a request signed by oauthlib's Client, exactly as signed (the URL is not re-encoded)."""
    headers = {"Content-Type": FORM} if form is not None else {}
    uri, headers, body = oauth.sign(str(client.make_url(path)), method,
                                    urlencode(form) if form is not None else None, headers)
    return await client.session.request(method, URL(uri, encoded=True), data=body, headers=headers,
                                        allow_redirects=False)


async def problem(resp: aiohttp.ClientResponse) -> str:
    """The reason a refusal names: the GitHub-style message of an API call, or a form body's text."""
    if resp.content_type == "application/json":
        return str((await resp.json())["message"])
    return await resp.text()


async def auth_log(client: TestClient) -> list[str]:
    return [e["auth_scheme"] for e in await (await client.get("/_admin/auth_log")).json()]


def pem_pair(kind: str = "rsa") -> tuple[str, str]:
    """A fresh (private, public) PEM pair, as a customer would make one."""
    private = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    return (
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
        private.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    )


def sign_jwt(claims: dict[str, Any], private_pem: str, alg: str = "RS256", **header: str) -> str:
    key = RSAKey.import_key(private_pem) if alg == "RS256" else ECKey.import_key(private_pem)
    return jwt.encode({"alg": alg, **header}, claims, key)


# ------------------------------------------------------------------------------- OAuth 1.0a
async def oauth1_login(client: TestClient) -> tuple[Client, dict[str, str]]:
    """The three legs; returns a Client holding the access token and the access token step's request."""
    consumer = Client(CLIENT_ID, CLIENT_SECRET, callback_uri="http://app.test/cb?state=s1")
    resp = await signed(client, consumer, "POST", "/oauth1/request_token")
    assert resp.status == 200 and resp.content_type == FORM
    request_token = dict(parse_qsl(await resp.text()))
    assert request_token["oauth_callback_confirmed"] == "true"

    resp = await client.get("/oauth1/authorize", params={"oauth_token": request_token["oauth_token"]},
                            allow_redirects=False)
    assert resp.status == 302
    location = urlsplit(resp.headers["Location"])
    back = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert location.netloc == "app.test" and back["state"] == "s1"
    assert back["oauth_token"] == request_token["oauth_token"]

    exchange = dict(resource_owner_key=request_token["oauth_token"],
                    resource_owner_secret=request_token["oauth_token_secret"], verifier=back["oauth_verifier"])
    resp = await signed(client, Client(CLIENT_ID, CLIENT_SECRET, **exchange), "POST", "/oauth1/access_token")
    assert resp.status == 200, await resp.text()
    access = dict(parse_qsl(await resp.text()))
    assert access["screen_name"] == "demo-user" and access["user_id"].isdigit()
    user = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key=access["oauth_token"],
                  resource_owner_secret=access["oauth_token_secret"])
    return user, exchange


async def test_oauth1_three_legged_flow_signs_query_and_form_params() -> None:
    async with provider() as client:
        user, exchange = await oauth1_login(client)

        replay = await signed(client, Client(CLIENT_ID, CLIENT_SECRET, **exchange), "POST", "/oauth1/access_token")
        assert replay.status == 401 and "token_used" in await problem(replay)

        assert (await signed(client, user, "GET", "/user")).status == 200
        listed = await signed(client, user, "GET", ISSUES + "?state=all&per_page=2")
        assert listed.status == 200 and len(await listed.json()) == 2
        created = await signed(client, user, "POST", ISSUES, form={"title": "Signed form", "body": "x y"})
        assert created.status == 201 and (await created.json())["title"] == "Signed form"
        plaintext = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key=user.resource_owner_key,
                           resource_owner_secret=user.resource_owner_secret, signature_method=SIGNATURE_PLAINTEXT)
        assert (await signed(client, plaintext, "GET", "/user")).status == 200
        assert await auth_log(client) == ["oauth1"] * 6  # request token, access token, four API calls

        # The query and the form body are in the signature: change either and it no longer verifies.
        uri, headers, _ = user.sign(str(client.make_url(ISSUES + "?state=all")), "GET")
        tampered = await client.session.get(URL(uri.replace("state=all", "state=closed"), encoded=True),
                                            headers=headers)
        assert tampered.status == 401 and "signature_invalid" in await problem(tampered)
        uri, headers, _ = user.sign(str(client.make_url(ISSUES)), "POST", "title=A", {"Content-Type": FORM})
        tampered = await client.session.post(URL(uri, encoded=True), data="title=B", headers=headers)
        assert tampered.status == 401 and "signature_invalid" in await problem(tampered)
        stranger = Client(CLIENT_ID, "wrong-secret", resource_owner_key=user.resource_owner_key,
                          resource_owner_secret=user.resource_owner_secret)
        assert (await signed(client, stranger, "GET", "/user")).status == 401


async def test_oauth1_refuses_replayed_nonces_old_timestamps_and_unknown_tokens() -> None:
    state = DemoState(seed_issues=1)
    async with provider(state) as client:
        minted = state.auth.add_oauth1_token()  # the end of the three legs, for tests that skip them
        direct = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key=minted["oauth_token"],
                        resource_owner_secret=minted["oauth_token_secret"])
        assert (await signed(client, direct, "GET", "/user")).status == 200

        user, _ = await oauth1_login(client)
        fixed = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key=user.resource_owner_key,
                       resource_owner_secret=user.resource_owner_secret, nonce="n0nce-1",
                       timestamp=str(int(time.time())))
        assert (await signed(client, fixed, "GET", "/user")).status == 200
        again = await signed(client, fixed, "GET", "/user")
        assert again.status == 401 and "nonce_used" in await problem(again)

        stale = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key=user.resource_owner_key,
                       resource_owner_secret=user.resource_owner_secret, timestamp=str(int(time.time()) - 700))
        resp = await signed(client, stale, "GET", "/user")
        assert resp.status == 401 and "timestamp_refused" in await problem(resp)

        unknown = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key="not-a-token", resource_owner_secret="x")
        resp = await signed(client, unknown, "GET", "/user")
        assert resp.status == 401 and "token_rejected" in await problem(resp)

        wrong_consumer = Client(CLIENT_ID, "wrong", callback_uri="http://app.test/cb")
        resp = await signed(client, wrong_consumer, "POST", "/oauth1/request_token")
        assert resp.status == 401 and parse_qs(await resp.text())["oauth_problem"] == ["signature_invalid"]


async def test_oauth1_authorization_denied_redirects_with_denied() -> None:
    state = DemoState(seed_issues=1)
    async with provider(state) as client:
        consumer = Client(CLIENT_ID, CLIENT_SECRET, callback_uri="http://app.test/cb?state=s2")
        token = dict(parse_qsl(await (await signed(client, consumer, "POST", "/oauth1/request_token")).text()))
        state.deny_next_authorization = True
        resp = await client.get("/oauth1/authorize", params={"oauth_token": token["oauth_token"]},
                                allow_redirects=False)
        back = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert resp.status == 302 and back == {"state": ["s2"], "denied": [token["oauth_token"]]}
        again = await client.get("/oauth1/authorize", params={"oauth_token": token["oauth_token"]},
                                 allow_redirects=False)
        assert again.status == 400 and parse_qs(await again.text())["oauth_problem"] == ["token_used"]


# ------------------------------------------------------------------------------------------ TBA
def tba_client(consumer: tuple[str, str], token: dict[str, str], realm: str) -> Client:
    return Client(consumer[0], consumer[1], resource_owner_key=token["token_id"],
                  resource_owner_secret=token["token_secret"], signature_method=SIGNATURE_HMAC_SHA256, realm=realm)


async def test_tba_one_legged_hmac_sha256_with_the_account_realm() -> None:
    async with provider() as client:
        resp = await client.post("/_admin/tba_tokens", json={"account_id": "1234567_SB1"})
        token = await resp.json()
        assert resp.status == 201 and len(token["token_id"]) == len(token["token_secret"]) == 64
        consumer = (CLIENT_ID, CLIENT_SECRET)

        ok = await signed(client, tba_client(consumer, token, "1234567_SB1"), "GET", ISSUES + "?state=open")
        assert ok.status == 200
        assert await auth_log(client) == ["tba"]

        wrong_realm = await signed(client, tba_client(consumer, token, "1234567-sb1"), "GET", "/user")
        assert wrong_realm.status == 401 and "realm" in await problem(wrong_realm)
        sha1 = Client(CLIENT_ID, CLIENT_SECRET, resource_owner_key=token["token_id"],
                      resource_owner_secret=token["token_secret"], realm="1234567_SB1")
        resp = await signed(client, sha1, "GET", "/user")
        assert resp.status == 401 and "signature_method_rejected" in await problem(resp)
        forged = await signed(client, tba_client(consumer, {**token, "token_secret": "0" * 64}, "1234567_SB1"),
                              "GET", "/user")
        assert forged.status == 401 and "signature_invalid" in await problem(forged)


async def test_tba_second_consumer_and_tokens_bound_to_it() -> None:
    async with provider() as client:
        other = ("netsuite-integration-2", "a" * 64)
        resp = await client.post("/_admin/tba_consumers", json={"consumer_key": other[0], "consumer_secret": other[1]})
        assert resp.status == 201
        token = await (await client.post("/_admin/tba_tokens",
                                         json={"account_id": "7654321", "consumer_key": other[0]})).json()
        assert (await signed(client, tba_client(other, token, "7654321"), "GET", "/user")).status == 200
        default = (CLIENT_ID, CLIENT_SECRET)
        resp = await signed(client, tba_client(default, token, "7654321"), "GET", "/user")
        assert resp.status == 401 and "another consumer" in await problem(resp)
        unknown = await client.post("/_admin/tba_tokens", json={"account_id": "1", "consumer_key": "nope"})
        assert unknown.status == 400


# ----------------------------------------------------------------------------------- GitHub App
async def test_github_app_install_and_installation_token() -> None:
    private, public = pem_pair()
    async with provider() as client:
        resp = await client.post("/_admin/apps", json={"app_id": "123", "public_key_pem": public, "slug": "demo-app",
                                                       "setup_url": "http://app.test/oauth/callback?x=1"})
        assert resp.status == 201
        resp = await client.get("/apps/demo-app/installations/new", params={"state": "st"}, allow_redirects=False)
        assert resp.status == 302
        back = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
        assert back["setup_action"] == "install" and back["state"] == "st" and back["x"] == "1"
        path = f"/app/installations/{int(back['installation_id'])}/access_tokens"

        now = int(time.time())
        for iss in ("123", 123):  # GitHub's own examples use either
            app_jwt = sign_jwt({"iss": iss, "iat": now - 60, "exp": now + 540}, private)
            resp = await client.post(path, headers={"Authorization": f"Bearer {app_jwt}"})
            assert resp.status == 201
        body = await resp.json()
        assert set(body) == {"token", "expires_at", "permissions", "repository_selection"}
        assert body["token"].startswith("ghs_") and body["expires_at"].endswith("Z")
        assert body["repository_selection"] == "all"
        assert (await client.get("/user", headers={"Authorization": f"token {body['token']}"})).status == 200
        assert await auth_log(client) == ["jwt", "jwt", "bearer"]

        async def refused(claims: dict[str, Any], key: str = private, at: str = path) -> tuple[int, str]:
            resp = await client.post(at, headers={"Authorization": f"Bearer {sign_jwt(claims, key)}"})
            return resp.status, (await resp.json())["message"]

        status, message = await refused({"iss": "123", "iat": now - 700, "exp": now - 60})
        assert status == 401 and "'Expiration time' claim ('exp') must be" in message
        status, message = await refused({"iss": "123", "iat": now, "exp": now + 900})
        assert (status, message) == (401, "'Expiration time' claim ('exp') is too far in the future")
        status, message = await refused({"iss": "123", "iat": now, "exp": now + 60}, pem_pair()[0])
        assert (status, message) == (401, "A JSON web token could not be decoded")
        status, message = await refused({"iss": "123", "iat": now, "exp": now + 60},
                                        at="/app/installations/9/access_tokens")
        assert (status, message) == (404, "Not Found")


# ------------------------------------------------------------------------------------------ JWT
async def test_direct_jwt_as_bearer_and_ghost() -> None:
    private, public = pem_pair("ec")
    secret = "ab" * 32
    async with provider() as client:
        for key in ({"kid": "ASC1", "alg": "ES256", "key": public, "issuer": "issuer-1",
                     "audience": "appstoreconnect-v1"},
                    {"kid": "ghost1", "alg": "HS256", "key": secret, "key_encoding": "hex", "audience": "/admin/"}):
            assert (await client.post("/_admin/jwt_keys", json=key)).status == 201
        now = int(time.time())
        asc = {"iss": "issuer-1", "aud": "appstoreconnect-v1", "iat": now, "exp": now + 1200}
        asc_jwt = sign_jwt(asc, private, "ES256", kid="ASC1")
        assert (await client.get("/user", headers={"Authorization": f"Bearer {asc_jwt}"})).status == 200
        ghost = jwt.encode({"alg": "HS256", "kid": "ghost1"}, {"aud": "/admin/", "iat": now, "exp": now + 300},
                           OctKey.import_key(bytes.fromhex(secret)))
        assert (await client.get(ISSUES, headers={"Authorization": f"Ghost {ghost}"})).status == 200
        assert await auth_log(client) == ["jwt", "jwt"]

        async def refused(claims: dict[str, Any], key: str = private) -> str:
            token = sign_jwt(claims, key, "ES256", kid="ASC1")
            resp = await client.get("/user", headers={"Authorization": f"Bearer {token}"})
            assert resp.status == 401
            return str((await resp.json())["message"])

        assert "expired" in await refused({**asc, "iat": now - 1300, "exp": now - 100})
        assert "more than 1200 s" in await refused({**asc, "exp": now + 1500})
        assert "signature" in await refused(asc, pem_pair("ec")[0])
        assert "aud" in await refused({**asc, "aud": "someone-else"})
        assert "'exp'" in await refused({k: v for k, v in asc.items() if k != "exp"})
        hs_as_es = jwt.encode({"alg": "HS256", "kid": "ASC1"}, asc, OctKey.import_key(bytes.fromhex(secret)))
        resp = await client.get("/user", headers={"Authorization": f"Bearer {hs_as_es}"})
        assert resp.status == 401 and "alg" in (await resp.json())["message"]


async def test_jwt_bearer_grant_exchange() -> None:
    private, public = pem_pair()
    sa = "svc@demo.iam.gserviceaccount.com"
    async with provider() as client:
        key = {"kid": "sa-key-1", "alg": "RS256", "key": public, "issuer": sa}
        assert (await client.post("/_admin/jwt_keys", json=key)).status == 201
        token_url = str(client.make_url("/oauth2/jwt_token"))
        now = int(time.time())
        claims = {"iss": sa, "scope": "repo", "aud": token_url, "iat": now, "exp": now + 3600}

        async def grant(assertion: str) -> tuple[int, dict[str, Any]]:
            resp = await client.post("/oauth2/jwt_token", data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
            return resp.status, await resp.json()

        for header in ({"kid": "sa-key-1"}, {}):  # found by kid, else by iss
            status, body = await grant(sign_jwt(claims, private, **header))
            assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600
        resp = await client.get("/user", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert resp.status == 200
        assert await auth_log(client) == ["jwt", "jwt", "bearer"]

        for bad, reason in (({**claims, "aud": "https://oauth2.googleapis.com/token"}, "aud"),
                            ({**claims, "exp": now + 3700}, "after 'iat'"),
                            ({**claims, "iat": now - 4000, "exp": now - 400}, "expired")):
            status, body = await grant(sign_jwt(bad, private, kid="sa-key-1"))
            assert status == 400 and body["error"] == "invalid_grant" and reason in body["error_description"]
        status, body = await grant(sign_jwt(claims, pem_pair()[0], kid="sa-key-1"))
        assert status == 400 and body["error_description"] == "Invalid JWT Signature."
