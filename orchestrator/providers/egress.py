"""Where scripts and `/proxy` may send requests: the egress policy, checked after DNS resolution.

A script's `absolute_url` / `base_url_override` and the proxy's `Base-Url-Override` would otherwise
let a tenant use the worker or the API as a client inside the platform's network (Temporal's
frontend on loopback, the cloud metadata address, other services). The rules:

- A request may go to the integration's provider host (the host and port of the connection's
  resolved base URL), to hosts the operator lists in `EGRESS_ALLOW` (every environment), and to
  hosts listed in the integration's `egress_allow` (`PATCH /integrations/{key}`). Any other host is
  refused before anything is sent.
- Whatever the host, every address it resolves to must be public. Loopback, link-local (the
  metadata address 169.254.169.254 among them), private, unspecified, multicast and other
  non-global addresses are refused unless `EGRESS_ALLOW` covers them: an entry naming the host
  itself, or an address/CIDR entry holding the address. An integration's list never opens them
  (its editor holds an environment's secret key, not the operator's trust).
- The check runs inside the resolver of the session the requests use (`Egress.session`), so the
  addresses checked are the addresses connected to (no DNS rebinding between check and connect);
  IP literals, which never reach a resolver, are checked before the request. Redirects are
  followed by `proxy.send`, which checks every hop again.
- The connection's credentials go only to the provider host (`EgressPolicy.is_provider`).

Allow-list entries, comma-separated in `EGRESS_ALLOW`: `host`, `host:port`, `*.domain` (any
subdomain), an address (`10.0.0.5`, `::1`, `[::1]:8080`, `127.0.0.1:8080`) or a CIDR block
(`10.0.0.0/8`, `fd00::/8`). An entry without a port matches every port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

log = structlog.get_logger(__name__)

SETTING = "EGRESS_ALLOW"
INTEGRATION_LIST = "the integration's egress_allow list (PATCH /integrations/{key})"
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(OSError):
    """A request the egress policy refuses. An OSError so that, raised by the session's resolver,
    aiohttp hands it on as the cause of its connector error instead of swallowing it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---- addresses ----------------------------------------------------------------------------------

def address_problem(ip: IP) -> str | None:
    """Why an address is internal ("loopback addresses", ...), or None when it is public.

    IPv4 addresses wrapped in IPv6 (mapped, 6to4, Teredo, NAT64) are judged by the IPv4 inside.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return address_problem(inner)
    if ip.is_unspecified:
        return "unspecified addresses"
    if ip.is_loopback:
        return "loopback addresses"
    if ip.is_link_local:
        return "link-local addresses (the cloud metadata service among them)"
    if ip.is_multicast:
        return "multicast addresses"
    if ip.is_private:
        return "private addresses"
    if not ip.is_global:
        return "non-public addresses"
    return None


def _ip(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])   # an IPv6 scope id (fe80::1%eth0) is not part of it
    except ValueError:
        return None


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets; an address in its canonical form."""
    host = host.strip().strip("[]").rstrip(".").lower()
    ip = _ip(host)
    return str(ip) if ip is not None else host


# ---- allow-lists --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AllowEntry:
    text: str
    name: str | None = None            # an exact host name, or the domain of a `*.` entry
    wildcard: bool = False
    network: Network | None = None     # an address (/32, /128) or a CIDR block
    port: int | None = None            # None: every port

    def _port_ok(self, port: int) -> bool:
        return self.port is None or self.port == port

    def names(self, host: str, port: int) -> bool:
        """The entry names this host (an address entry names an IP-literal host it holds)."""
        if not self._port_ok(port):
            return False
        if self.network is not None:
            ip = _ip(host)
            return ip is not None and ip in self.network
        assert self.name is not None
        return host.endswith("." + self.name) if self.wildcard else host == self.name

    def holds(self, ip: IP, port: int) -> bool:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return (self.network is not None and self._port_ok(port)
                and (ip in self.network or (mapped is not None and mapped in self.network)))


def parse_entry(raw: str) -> AllowEntry:
    """One allow-list entry; ValueError says what is wrong with it."""
    text = raw.strip()
    if "://" in text or any(c.isspace() for c in text) or not text:
        raise ValueError(f"egress allow entry {raw!r} is not a host, host:port, address or CIDR block")
    if "/" in text:
        try:
            return AllowEntry(text, network=ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"egress allow entry {raw!r} is not a CIDR block (10.0.0.0/8, fd00::/8)") from None
    host, port_text = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"egress allow entry {raw!r}: write an IPv6 address with a port as [::1]:8080")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"egress allow entry {raw!r} has an invalid port")
        port = int(port_text)
    ip = _ip(host)
    if ip is not None:
        return AllowEntry(text, network=ipaddress.ip_network(ip), port=port)
    name = host.rstrip(".").lower()
    if ":" in name or not _NAME.match(name):
        raise ValueError(f"egress allow entry {raw!r} is not a valid host name")
    wildcard = name.startswith("*.")
    return AllowEntry(text, name=name[2:] if wildcard else name, wildcard=wildcard, port=port)


@dataclass(frozen=True)
class AllowList:
    entries: tuple[AllowEntry, ...] = ()

    def names(self, host: str, port: int) -> bool:
        return any(e.names(host, port) for e in self.entries)

    def covers(self, host: str, port: int, ip: IP) -> bool:
        """The operator opened this internal address for this host: by naming the host, or the address."""
        return any(e.holds(ip, port) or (e.network is None and e.names(host, port)) for e in self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)


def parse_allow_list(value: str | Iterable[str] | None) -> AllowList:
    """`EGRESS_ALLOW` (comma-separated) or a stored list -> AllowList; ValueError names a bad entry."""
    if value is None:
        return AllowList()
    items = value.split(",") if isinstance(value, str) else list(value)
    return AllowList(tuple(parse_entry(item) for item in items if item.strip()))


@lru_cache(maxsize=64)
def _cached(value: str) -> AllowList:
    return parse_allow_list(value)


def internal_entries(allow: AllowList) -> list[str]:
    """Entries an integration's list may not hold: addresses and blocks that are not public."""
    out = []
    for e in allow.entries:
        if e.network is not None and (address_problem(e.network.network_address) is not None
                                      or address_problem(e.network.broadcast_address) is not None):
            out.append(e.text)
    return out


# ---- the checks ---------------------------------------------------------------------------------

def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(operator: AllowList, host: str, port: int, ip: IP) -> None:
    """Raise EgressRefused unless the address is public or the operator's list covers it."""
    problem = address_problem(ip)
    if problem is None or operator.covers(host, port, ip):
        return
    where = _where(host, port)
    via = "" if _ip(host) is not None else f" ({host} resolves to {ip})"
    raise EgressRefused(f"egress to {where} refused{via}: {problem} are not allowed; add {where} to {SETTING} "
                        "(the operator's setting; an integration's egress_allow list cannot open internal "
                        "addresses)")


class PolicyResolver(AbstractResolver):
    """Resolves without blocking the loop, then checks every address against the operator's list:
    what it returns is what the connector connects to, so the check and the connection agree."""

    def __init__(self, operator: Callable[[], AllowList]) -> None:
        self._operator = operator
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        operator, name = self._operator(), normalize_host(host)
        for result in results:
            ip = _ip(result["host"])
            if ip is None:
                raise EgressRefused(f"egress to {_where(name, port)} refused: {result['host']!r} is not an address")
            check_address(operator, name, port, ip)
        return results

    async def close(self) -> None:
        await self._inner.close()


class Egress:
    """One process's egress: the operator's allow-list and the session whose resolver enforces it.

    `operator_allow` is the `EGRESS_ALLOW` value, or a callable returning it (read at every check,
    so the value of the settings object in use counts). Open the session inside the event loop
    that uses it; `close()` it with the process's other handles.
    """

    def __init__(self, operator_allow: str | Callable[[], str] = "") -> None:
        self._allow = operator_allow
        self._session: aiohttp.ClientSession | None = None

    def operator(self) -> AllowList:
        return _cached(self._allow() if callable(self._allow) else self._allow)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.operator))
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Egress:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def check_outbound(self, url: str | URL) -> None:
        """For requests the platform sends on a tenant's say-so (token endpoints, result webhooks): any public
        host, internal addresses only where the operator's list names them. A literal address is checked here,
        a host name's addresses by the session's resolver when it connects (`post_outbound` does both)."""
        host, port = http_origin(url)
        ip = _ip(host)
        if ip is not None:
            check_address(self.operator(), host, port, ip)

    def post_outbound(self, url: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.outbound("POST", url, **kwargs)

    @contextlib.asynccontextmanager
    async def outbound(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request on a tenant's say-so (token endpoints, result webhooks, a GitHub app's installation): the
        URL checked, no redirect followed, and a refusal by the session's resolver raised as the EgressRefused
        itself rather than wrapped in a connector error, so callers tell "refused" from "unreachable" with one
        except."""
        self.check_outbound(url)
        try:
            async with self.session.request(method, url, allow_redirects=False, **kwargs) as resp:
                yield resp
        except aiohttp.ClientError as exc:
            refused = refusal(exc)
            if refused is not None:
                raise refused from None
            raise

    def policy(self, base_url: str | None, integration_allow: Iterable[str] = (),
               integration_key: str = "") -> EgressPolicy:
        """The rules of one connection's requests: its provider host plus the integration's list."""
        try:
            integration = parse_allow_list(integration_allow)
        except ValueError as exc:  # stored before validation existed, or edited by hand: ignore, say so
            log.warning("egress_integration_allow_invalid", integration=integration_key, error=str(exc))
            integration = AllowList()
        return EgressPolicy(self, origin(base_url) if base_url else None, integration, integration_key)


_STRICT: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Egress] = weakref.WeakKeyDictionary()


def strict_egress() -> Egress:
    """For a caller that was given no Egress: the provider's host and public addresses only (no
    operator list), one per event loop. The worker, the API and the dry run pass their own."""
    loop = asyncio.get_running_loop()
    if loop not in _STRICT:
        log.warning("egress_default_used", reason="no Egress was given; nothing beyond the provider's public host")
        _STRICT[loop] = Egress("")
    return _STRICT[loop]


def origin(url: str | URL) -> tuple[str, int] | None:
    """(host, port) of a URL, the host normalized; None without a host."""
    parsed = url if isinstance(url, URL) else URL(url)
    host = parsed.raw_host
    if not host or parsed.port is None:
        return None
    return normalize_host(host), parsed.port


def http_origin(url: str | URL) -> tuple[str, int]:
    """(host, port) of an http(s) URL; anything else is refused."""
    parsed = url if isinstance(url, URL) else URL(url)
    if parsed.scheme not in ("http", "https"):
        raise EgressRefused(f"egress to {parsed.human_repr()!r} refused: only http and https URLs are allowed")
    found = origin(parsed)
    if found is None:
        raise EgressRefused(f"egress to {parsed.human_repr()!r} refused: the URL has no host")
    return found


def entry_for(url: str) -> str:
    """The allow-list entry (host:port) naming exactly the origin of a URL: how a dev stack or a test
    lists the server it runs on loopback."""
    found = origin(url)
    if found is None:
        raise ValueError(f"{url!r} has no host")
    return _where(*found)


@dataclass(frozen=True)
class EgressPolicy:
    egress: Egress
    provider: tuple[str, int] | None
    integration: AllowList
    integration_key: str = ""

    def is_provider(self, url: str | URL) -> bool:
        """Only the provider's own host receives the connection's credentials."""
        return self.provider is not None and origin(url) == self.provider

    def check(self, url: str | URL) -> None:
        """Refuse a URL whose host is not allowed, or whose IP-literal host is internal and not opened.

        A host name's addresses are checked by the session's resolver when it connects."""
        self.egress.check_outbound(url)  # an internal literal address first: only the operator's list opens it
        host, port = found = http_origin(url)
        operator = self.egress.operator()
        if not (found == self.provider or operator.names(host, port) or self.integration.names(host, port)):
            provider = _where(*self.provider) if self.provider else "none"
            key = self.integration_key or "{key}"
            raise EgressRefused(
                f"egress to {_where(host, port)} refused: it is not the provider's host ({provider}) and no "
                f"allow-list names it; add it to {SETTING} or to the integration's egress_allow list "
                f"(PATCH /integrations/{key})")


def refusal(exc: BaseException) -> EgressRefused | None:
    """The EgressRefused behind an aiohttp connector error raised by the policy resolver, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, EgressRefused):
            return current
        seen.add(id(current))
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return None
