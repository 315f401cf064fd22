"""Failed-login throttling for the dashboard: guessing keys or the password gets slow, then refused; and who
the client is behind trusted proxies (TRUSTED_PROXIES), for that throttle and the session cookie's Secure flag."""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from orchestrator.api.keys import PLATFORM


def _key(client: str) -> str:
    """An IPv6 client counts by its /64, which one host can hand itself addresses from at will; an IPv4 address
    (or anything that is not an address) as itself."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class LoginThrottle:
    """At most `limit` failed attempts per client (`_key`) within `window_s`; successes do not count. Clients
    whose failures have all left the window are swept once a window, so the map holds only recent ones however
    many addresses fail once and never come back."""

    def __init__(self, limit: int = 10, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._failures)

    def _sweep(self, now: float) -> None:
        self._failures = {c: seen for c, seen in self._failures.items() if seen and now - seen[-1] <= self.window_s}
        self._swept = now

    def _recent(self, client: str) -> deque[float]:
        now = self.clock()
        if now - self._swept > self.window_s:
            self._sweep(now)
        client = _key(client)
        seen = self._failures.setdefault(client, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if not seen:
            self._failures.pop(client, None)
        return seen

    def blocked_for(self, client: str) -> float:
        """Seconds until this client may try again (0 when it may try now)."""
        seen = self._recent(client)
        if len(seen) < self.limit:
            return 0.0
        return max(0.0, self.window_s - (self.clock() - seen[0]))

    def failed(self, client: str) -> None:
        self._recent(client)
        self._failures.setdefault(_key(client), deque()).append(self.clock())


# ---- who the client is, behind an ingress --------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """TRUSTED_PROXIES parsed (validated by Settings; cached since it is read per request)."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in spec.split(",") if e.strip())


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def client_address(peer: str | None, forwarded_for: list[str], networks: tuple[Network, ...]) -> str:
    """The client to throttle: the direct peer, unless it is a trusted proxy; then the right-most address of
    X-Forwarded-For that is not a trusted proxy (left of it, anything is the client's own claim, so a client
    cannot pick its throttle key). Without trusted proxies every sign-in behind an ingress would share the
    ingress pod's address: one attacker would lock everyone out, and the limit would not slow them."""
    client = peer or "unknown"
    if not networks or not _trusted(client, networks):
        return client
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
        client = hop
    return client  # every hop is a proxy: the left-most one


def came_over_https(secure: bool, peer: str | None, forwarded_proto: str | None,
                    networks: tuple[Network, ...]) -> bool:
    """HTTPS to this process, or to a trusted proxy that says so (X-Forwarded-Proto; its last value)."""
    if secure:
        return True
    if not forwarded_proto or not networks or not _trusted(peer or "", networks):
        return False
    return forwarded_proto.split(",")[-1].strip().lower() == "https"


def request_client(request: web.Request) -> str:
    """The login throttle's key for this request (client_address under the process's TRUSTED_PROXIES)."""
    settings = request.app[PLATFORM].settings
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                          trusted_networks(settings.trusted_proxies))


def cookie_secure(request: web.Request) -> bool:
    """Whether the session cookie gets Secure: SESSION_COOKIE_SECURE, or HTTPS here or at a trusted proxy."""
    settings = request.app[PLATFORM].settings
    return settings.session_cookie_secure or came_over_https(
        request.secure, request.remote, request.headers.get("X-Forwarded-Proto"),
        trusted_networks(settings.trusted_proxies))
