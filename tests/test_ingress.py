"""The dashboard behind an ingress (issue 17, "Operating it"): the login throttle keys on the client from
trusted proxies' X-Forwarded-For (TRUSTED_PROXIES), never on the ingress pod nor on what a client claims,
and the session cookie is Secure when TLS ended at a trusted proxy (or SESSION_COOKIE_SECURE says so)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from orchestrator.api.app import create_app
from orchestrator.config.settings import Settings
from orchestrator.dashboard import session as sessions
from orchestrator.dashboard.throttle import came_over_https, client_address, trusted_networks
from tests.conftest import Stack

INGRESS = trusted_networks("10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(("peer", "xff", "networks", "expected"), [
    # no trusted proxies: the peer, whatever the header says
    ("10.1.2.3", ["203.0.113.5"], (), "10.1.2.3"),
    # a trusted ingress pod: the address it saw
    ("10.1.2.3", ["203.0.113.5"], INGRESS, "203.0.113.5"),
    # a client's own X-Forwarded-For is kept on the left: the right-most untrusted address counts
    ("10.1.2.3", ["6.6.6.6, 203.0.113.5"], INGRESS, "203.0.113.5"),
    ("10.1.2.3", ["6.6.6.6", "203.0.113.5, 10.9.9.9"], INGRESS, "203.0.113.5"),  # two proxies, two headers
    # an untrusted peer cannot choose its key by sending the header
    ("198.51.100.7", ["203.0.113.5"], INGRESS, "198.51.100.7"),
    # IPv6 both sides
    ("fd00::1", ["2001:db8::9"], INGRESS, "2001:db8::9"),
    # a trusted peer without the header, or only proxies in it
    ("10.1.2.3", [], INGRESS, "10.1.2.3"),
    ("10.1.2.3", ["10.4.4.4"], INGRESS, "10.4.4.4"),
    # garbage in the header is nobody we trust: it is the key (as an opaque string), not a bypass
    ("10.1.2.3", ["not-an-ip"], INGRESS, "not-an-ip"),
    (None, [], INGRESS, "unknown"),
])
def test_client_address(peer: str | None, xff: list[str], networks: Any, expected: str) -> None:
    assert client_address(peer, xff, networks) == expected


def test_came_over_https() -> None:
    assert came_over_https(True, "198.51.100.7", None, ())
    assert came_over_https(False, "10.1.2.3", "https", INGRESS)
    assert came_over_https(False, "10.1.2.3", "http, https", INGRESS)  # the last proxy's word
    assert not came_over_https(False, "10.1.2.3", "http", INGRESS)
    assert not came_over_https(False, "198.51.100.7", "https", INGRESS)  # not from a trusted proxy
    assert not came_over_https(False, "10.1.2.3", "https", ())


def test_trusted_proxies_must_be_addresses_or_blocks() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8,192.168.1.1, fd00::/8").trusted_proxies
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES: 'ingress' is not"):
        Settings(trusted_proxies="10.0.0.0/8,ingress")


async def _fail_logins(client: TestClient, n: int, **headers: str) -> list[int]:
    codes = []
    for _ in range(n):
        resp = await client.post("/dashboard/login", data={"secret": "wrong"}, headers=headers,
                                 allow_redirects=False)
        codes.append(resp.status)
    return codes


async def test_the_throttle_keys_on_the_client_behind_a_trusted_ingress(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"trusted_proxies": "127.0.0.0/8"})  # the test client's peer
    async with TestClient(TestServer(create_app(settings, temporal=stack.client))) as client:
        assert 429 not in await _fail_logins(client, 10, **{"X-Forwarded-For": "203.0.113.5"})
        assert (await _fail_logins(client, 1, **{"X-Forwarded-For": "203.0.113.5"})) == [429]
        # another client through the same ingress pod is not locked out
        assert (await _fail_logins(client, 1, **{"X-Forwarded-For": "203.0.113.6"})) != [429]
        # and the first cannot slip out by prepending an address of its choice
        assert (await _fail_logins(client, 1, **{"X-Forwarded-For": "1.1.1.1, 203.0.113.5"})) == [429]


async def test_without_trusted_proxies_the_header_is_ignored(stack: Stack) -> None:
    async with TestClient(TestServer(create_app(stack.settings, temporal=stack.client))) as client:
        assert 429 not in await _fail_logins(client, 10, **{"X-Forwarded-For": "203.0.113.5"})
        # a new X-Forwarded-For per attempt does not buy new attempts
        assert (await _fail_logins(client, 1, **{"X-Forwarded-For": "203.0.113.99"})) == [429]


@pytest.mark.parametrize(("update", "headers", "secure"), [
    ({}, {}, False),
    ({}, {"X-Forwarded-Proto": "https"}, False),  # no trusted proxy: the header is anyone's
    ({"trusted_proxies": "127.0.0.0/8"}, {"X-Forwarded-Proto": "https"}, True),
    ({"trusted_proxies": "127.0.0.0/8"}, {"X-Forwarded-Proto": "http"}, False),
    ({"session_cookie_secure": True}, {}, True),
])
async def test_the_session_cookie_is_secure_behind_tls_termination(stack: Stack, update: dict[str, Any],
                                                                   headers: dict[str, str], secure: bool) -> None:
    _env, key = await stack.new_environment()
    settings = stack.settings.model_copy(update=update)
    async with TestClient(TestServer(create_app(settings, temporal=stack.client))) as client:
        resp = await client.post("/dashboard/login", data={"secret": key, "next": "/dashboard/connections"},
                                 headers=headers, allow_redirects=False)
        assert resp.status == 302, await resp.text()
        cookies = [c for c in resp.headers.getall("Set-Cookie") if c.startswith(f"{sessions.COOKIE}=")]
        assert len(cookies) == 1, resp.headers
        flags = {part.strip().lower() for part in cookies[0].split(";")}
        assert ("secure" in flags) is secure, cookies[0]
        assert "httponly" in flags
