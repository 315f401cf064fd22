"""Saved HTTP exchanges: the on-disk format, redaction, recording (dryrun) and replay (tests).

A script's saved run lives in `<integrations>/<integration>/mocks/<script>/`:

- `http.json`: every exchange, in order: `{"method", "path", "query", "body", "status", "headers",
  "response"}` (request headers are not kept; response headers are, minus cookies and secrets);
- `run.json`: how it was run: kind, connection id, metadata, last_sync_date, input;
- `records.json` (syncs): `{model: {"save": [...], "update": [...], "delete": [...]}}`;
- `output.json` (actions): `{"output": ...}`.

Credentials (the connection's tokens, keys, passwords and environment variable values) are replaced by
`***` everywhere, and headers and query parameters with secret-looking names are redacted by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HTTP_FILE = "http.json"
RUN_FILE = "run.json"
RECORDS_FILE = "records.json"
OUTPUT_FILE = "output.json"
REDACTED = "***"
_SECRET_NAME = re.compile(r"auth|token|secret|password|passwd|api[-_]?key|apikey|signature|session|cookie|"
                          r"credential|private", re.IGNORECASE)
_DROPPED_HEADERS = {"set-cookie", "cookie", "authorization", "proxy-authorization"}


def mocks_dir(folder: Path, integration: str, script: str) -> Path:
    return folder / integration / "mocks" / script


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalise_query(params: Any) -> dict[str, Any]:
    """Query parameters as strings (lists stay lists), None dropped, sorted by name."""
    if params is None:
        return {}
    if isinstance(params, str):
        pairs: Iterable[tuple[str, Any]] = parse_qsl(params.lstrip("?"), keep_blank_values=True)
    elif isinstance(params, dict):
        pairs = params.items()
    else:
        pairs = params
    out: dict[str, Any] = {}
    for key, value in pairs:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out[str(key)] = [_scalar(v) for v in value]
        elif str(key) in out:
            prev = out[str(key)]
            out[str(key)] = [*(prev if isinstance(prev, list) else [prev]), _scalar(value)]
        else:
            out[str(key)] = _scalar(value)
    return dict(sorted(out.items()))


def split_request(endpoint: str, params: Any, absolute_url: str | None = None) -> tuple[str, dict[str, Any]]:
    """(path, query) of a script's request: a query in the endpoint or link is merged into the params."""
    target = absolute_url or endpoint or "/"
    parts = urlsplit(target)
    path = parts.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = normalise_query(parts.query) if parts.query else {}
    if not absolute_url:
        query.update(normalise_query(params))
    return path, dict(sorted(query.items()))


def _json_body(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


@dataclass
class Exchange:
    method: str
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    response: Any = None

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        text = f"{self.method} {self.path}" + (f"?{query}" if query else "")
        if self.body is not None:
            text += " body " + json.dumps(self.body, sort_keys=True, default=str)[:200]
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "query": self.query, "body": self.body,
                "status": self.status, "headers": self.headers, "response": self.response}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Exchange:
        return cls(method=str(raw.get("method", "GET")).upper(), path=str(raw.get("path", "/")),
                   query=normalise_query(raw.get("query")), body=raw.get("body"),
                   status=int(raw.get("status", 200)), headers=dict(raw.get("headers") or {}),
                   response=raw.get("response"))


# --------------------------------------------------------------------------- redaction


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every secret string replaced, through a JSON round trip."""
    secrets = list(secrets)
    if not secrets:
        return value
    encoded = json.dumps(value, default=str, ensure_ascii=False)
    redacted = redact_text(encoded, secrets)
    return value if redacted == encoded else json.loads(redacted)


def redact_headers(headers: dict[str, str], secrets: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _DROPPED_HEADERS:
            continue
        if _SECRET_NAME.search(lowered) and not lowered.startswith(("x-ratelimit", "ratelimit")):
            out[lowered] = REDACTED
        else:
            out[lowered] = redact_text(str(value), secrets)
    return out


def redact_query(query: dict[str, Any], secrets: Iterable[str]) -> dict[str, Any]:
    secrets = list(secrets)
    return {k: (REDACTED if _SECRET_NAME.search(k) else redact_value(v, secrets)) for k, v in query.items()}


# --------------------------------------------------------------------------- recording (dryrun)


class HttpRecorder:
    """A `ScriptHost` HTTP hook that performs each request and keeps a redacted copy of the exchange.

    `secrets` is called at save time (credentials may be refreshed during the run)."""

    def __init__(self, secrets: Callable[[], list[str]] | None = None) -> None:
        self.exchanges: list[Exchange] = []
        self._secrets = secrets or (lambda: [])
        # the host's own redaction (its credentials and environment variable values), set by the dry run
        self.redactor: Callable[[str], str] = lambda text: text
        self.context: dict[str, Any] = {}  # provider, metadata, connection_config at the start of the run

    def redact(self, value: Any) -> Any:
        encoded = json.dumps(value, default=str, ensure_ascii=False)
        redacted = self.redactor(encoded)
        return value if redacted == encoded else json.loads(redacted)

    async def __call__(self, req: Any, send: Callable[[], Awaitable[Any]]) -> Any:
        result = await send()
        path, query = split_request(req.endpoint, req.params, req.absolute_url)
        secrets = self._secrets()
        self.exchanges.append(Exchange(
            method=req.method.upper(), path=path, query=redact_query(query, secrets),
            body=redact_value(_json_body(req.data), secrets), status=int(result.status),
            headers=redact_headers(dict(result.headers), secrets),
            response=redact_value(result.data, secrets)))
        self.exchanges[-1] = Exchange.from_dict(self.redact(self.exchanges[-1].as_dict()))
        return result


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def save_run(target: Path, *, exchanges: list[Exchange], run: dict[str, Any], records: dict[str, Any] | None,
             output: Any, kind: str, secrets: Iterable[str] = ()) -> list[Path]:
    """Write a saved run (replacing the previous one); returns the files written."""
    secrets = list(secrets)
    target.mkdir(parents=True, exist_ok=True)
    for stale in (HTTP_FILE, RUN_FILE, RECORDS_FILE, OUTPUT_FILE):
        (target / stale).unlink(missing_ok=True)
    written = [target / HTTP_FILE, target / RUN_FILE]
    _dump(target / HTTP_FILE, [e.as_dict() for e in exchanges])
    _dump(target / RUN_FILE, redact_value(run, secrets))
    if kind == "action":
        _dump(target / OUTPUT_FILE, {"output": redact_value(output, secrets)})
        written.append(target / OUTPUT_FILE)
    else:
        _dump(target / RECORDS_FILE, redact_value(records or {}, secrets))
        written.append(target / RECORDS_FILE)
    return written


# --------------------------------------------------------------------------- replay


class UnexpectedRequest(AssertionError):
    """The script made a request that has no saved (or given) response."""

    def __init__(self, request: Exchange, known: list[Exchange]) -> None:
        self.request = request
        listed = "\n".join(f"  {e.describe()}" for e in known[:20]) or "  (none)"
        super().__init__(f"no saved response for {request.describe()}\nsaved requests:\n{listed}")


@dataclass
class _Mocked:
    exchange: Exchange
    partial: bool  # given inline without query/body: matches any query/body
    used: int = 0


class ResponseBook:
    """Responses to replay: saved exchanges match on method, path, query and body; a response given
    inline without `query`/`body` matches any. Identical requests get their responses in order (the
    last one repeats)."""

    def __init__(self, exchanges: Iterable[Exchange] = ()) -> None:
        self._entries: list[_Mocked] = [_Mocked(e, partial=False) for e in exchanges]
        self.requests: list[Exchange] = []
        self.unexpected: list[UnexpectedRequest] = []

    @classmethod
    def load(cls, directory: Path) -> ResponseBook:
        file = directory / HTTP_FILE
        if not file.is_file():
            return cls()
        raw = json.loads(file.read_text(encoding="utf-8"))
        return cls(Exchange.from_dict(item) for item in raw)

    def add(self, method: str, path: str, *, response: Any = None, status: int = 200,
            headers: dict[str, str] | None = None, query: dict[str, Any] | None = None, body: Any = None,
            partial: bool | None = None) -> None:
        path, extra = split_request(path, query)
        exchange = Exchange(method=method.upper(), path=path, query=extra, body=body, status=status,
                            headers={k.lower(): v for k, v in (headers or {}).items()}, response=response)
        if partial is None:
            partial = query is None and body is None and not extra
        self._entries.append(_Mocked(exchange, partial=partial))

    @property
    def exchanges(self) -> list[Exchange]:
        return [m.exchange for m in self._entries]

    def unused(self) -> list[Exchange]:
        return [m.exchange for m in self._entries if not m.used]

    def _matches(self, entry: _Mocked, req: Exchange) -> bool:
        saved = entry.exchange
        if saved.method != req.method or saved.path.rstrip("/") != req.path.rstrip("/"):
            return False
        if entry.partial:
            return True
        return saved.query == req.query and _json_body(saved.body) == _json_body(req.body)

    def answer(self, method: str, endpoint: str, params: Any, data: Any, absolute_url: str | None,
               headers: dict[str, str] | None = None) -> Exchange:
        """The saved response for a request (`headers` do not count here; Nango's recorded mocks count them)."""
        path, query = split_request(endpoint, params, absolute_url)
        req = Exchange(method=method.upper(), path=path, query=query, body=_json_body(data))
        self.requests.append(req)
        candidates = [e for e in self._entries if self._matches(e, req)]
        exact = [e for e in candidates if not e.partial] or candidates
        if not exact:
            error = UnexpectedRequest(req, self.exchanges)
            self.unexpected.append(error)
            raise error
        fresh = [e for e in exact if not e.used]
        chosen = fresh[0] if fresh else exact[-1]
        chosen.used += 1
        return chosen.exchange
