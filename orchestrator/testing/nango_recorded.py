"""Mocks recorded by Nango's own CLI (`nango dryrun --save-responses`), replayed by `nango test`.

A team moving from Nango keeps its recorded tests: a Python port of a script passes against the mocks its
TypeScript original recorded. Two layouts, the one each Nango version writes (files in `<integration>/`):

- 0.6x, many files: `mocks/nango/<method>/proxy/<endpoint>/<script>/<hash>.json` (one per request, with its
  `requestIdentity` and response), `mocks/nango/getConnection.json`, `mocks/nango/getMetadata.json`,
  `mocks/<script>/<Model>/batchSave.json` and `batchDelete.json` (syncs), `mocks/<script>/input.json` and
  `output.json` (actions); older recordings keep one response per endpoint in `.../<endpoint>/<script>.json`.
- 0.7x, one file: `tests/<script>.test.json` (`input`, `output`, `nango.batchSave`, `api.<method>.<endpoint>`).

A sync variant's dry run is recorded beside the base one: in 0.6x its requests one folder deeper,
`.../<endpoint>/<script>/<variant>/<hash>.json`, and its records in `mocks/<script>/<variant>/<Model>/`; in 0.7x
in the same `.test.json`, its models named `<Model>::<variant>`. The connection and its metadata are the
connection's, shared by every variant. Nango's own test helpers read only the base recording, whatever variant a
script runs as; we replay a variant's own recording when it has one, else the base one as Nango does.

A request is matched the way Nango matches it: by the identity Nango's recorder hashed (the request as it
left Nango's client: method, endpoint as the URL parser normalizes it, query parameters as strings sorted by
name, the caller's headers minus Nango's own, the body), else by the same parameters, headers and body.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from orchestrator.testing.mocks import (
    Exchange,
    ResponseBook,
    UnexpectedRequest,
    _json_body,
    _Mocked,
    normalise_query,
    split_request,
)

LEGACY = "Nango 0.6x mocks"
UNIFIED = "Nango 0.7x .test.json"
BASE_VARIANT = "base"

# Headers Nango's recorder leaves out of a request's identity: its own and the HTTP client's.
FILTER_HEADERS = frozenset({
    "authorization", "user-agent", "nango-proxy-user-agent", "accept-encoding", "retries", "host", "connection-id",
    "provider-config-key", "nango-is-sync", "nango-is-script", "nango-is-dry-run", "nango-activity-log-id",
    "content-length", "accept", "base-url-override", "retry-on", "forward-headers-on-redirect"})
_PROXY_PREFIX = "nango-proxy-"
_LONG_BODY = 1000  # UTF-16 units: a longer body is identified by its sha1


class RecordedMockError(ValueError):
    """A recorded mock file that cannot be read: the message names the file."""


# --------------------------------------------------------------------------- JavaScript's String() and JSON


def _js_number(value: float) -> str:
    """A number as JavaScript prints it (1.0 -> "1", 1e-7 -> "1e-7", 1e21 -> "1e+21")."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # where the decimal point falls in `text`
    out = "-" if sign else ""
    if 0 < point <= 21:
        out += text + "0" * (point - len(text)) if point >= len(text) else text[:point] + "." + text[point:]
    elif -6 < point <= 0:
        out += "0." + "0" * -point + text
    else:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out += f"{mantissa}e{'+' if point - 1 >= 0 else '-'}{abs(point - 1)}"
    return out


def _js_primitive(value: Any) -> str | None:
    """null, a boolean or a finite number, written the same by `String()` and `JSON.stringify`; else None."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return _js_number(value)
    return None


def js_string(value: Any) -> str:
    """`String(value)` in JavaScript: what Nango's client puts in a query parameter or header."""
    if (primitive := _js_primitive(value)) is not None:
        return primitive
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, list | tuple):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _index_key(key: str) -> bool:
    return key.isdigit() and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1


def js_json(value: Any) -> str:
    """`JSON.stringify(value)`: compact, non-ASCII kept, integer-like keys first as JavaScript orders them."""
    if (primitive := _js_primitive(value)) is not None:
        return primitive
    if isinstance(value, float):
        return "null"  # NaN and the infinities
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        ordered = sorted((k for k in keys if _index_key(k)), key=int) + [k for k in keys if not _index_key(k)]
        items = {str(k): v for k, v in value.items()}
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{js_json(items[k])}" for k in ordered) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _utf16_key(entry: tuple[str, str]) -> bytes:
    return entry[0].encode("utf-16-be", "surrogatepass")  # JavaScript compares strings by UTF-16 units


# --------------------------------------------------------------------------- the URL, as Nango's client builds it

_PATH_ENCODED = set(' "#<>?`{}')


def _url_path(path: str) -> str:
    """A path as the WHATWG URL parser keeps it: `\\` is `/`, dot segments resolved, unsafe bytes %-encoded."""
    encoded = []
    for char in path.replace("\\", "/"):
        if ord(char) <= 0x20 or ord(char) >= 0x7F or char in _PATH_ENCODED:
            encoded.append("".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass")))
        else:
            encoded.append(char)
    segments: list[str] = []
    parts = "".join(encoded).split("/")[1:]
    for index, segment in enumerate(parts):
        lowered = segment.lower()
        last = index == len(parts) - 1
        if lowered in ("..", ".%2e", "%2e.", "%2e%2e"):
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif lowered in (".", "%2e"):
            if last:
                segments.append("")
        else:
            segments.append(segment)
    return "/" + "/".join(segments)


def _form_pairs(query: str) -> list[tuple[str, str]]:
    """`URLSearchParams` parsing: `&`-separated, `+` is a space, percent-decoded as UTF-8."""
    pairs = []
    for piece in query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((unquote_plus(name, errors="replace"), unquote_plus(value, errors="replace")))
    return pairs


# --------------------------------------------------------------------------- a request's identity


@dataclass(frozen=True)
class RequestIdentity:
    method: str  # lower case, as Nango writes it
    endpoint: str  # without its leading slash
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    data: str | None = None

    @property
    def hash(self) -> str:
        """sha1 of the identity's JSON, the name Nango's recorder gave the mock file."""
        body: dict[str, Any] = {"method": self.method, "endpoint": self.endpoint,
                                "params": [list(p) for p in self.params], "headers": [list(h) for h in self.headers]}
        if self.data is not None:
            body["data"] = self.data
        return hashlib.sha1(js_json(body).encode("utf-8", "surrogatepass")).hexdigest()

    def describe(self) -> str:
        text = f"{self.method.upper()} /{self.endpoint} params {js_json([list(p) for p in self.params])}"
        if self.headers:
            text += f" headers {js_json([list(h) for h in self.headers])}"
        if self.data is not None:
            text += f" body {self.data[:200]}"
        return text


def _data_identity(data: Any) -> str | None:
    if data is None or data is False or data == "" or (type(data) in (int, float) and data == 0):
        return None  # falsy in JavaScript: Nango keeps no body
    text = data if isinstance(data, str) else js_json(data)
    if len(text.encode("utf-16-le", "surrogatepass")) // 2 > _LONG_BODY:
        return "sha1:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def _default_content_type(name: str, value: str) -> bool:
    """The content types the HTTP client adds by itself, which Nango leaves out of the identity."""
    lowered = value.lower()
    return name.lower() == "content-type" and (
        lowered in ("application/json", "undefined") or lowered.startswith("application/x-www-form-urlencoded"))


def _identity_headers(headers: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw, value in (headers or {}).items():
        name = raw[len(_PROXY_PREFIX):] if raw.lower().startswith(_PROXY_PREFIX) else raw
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        text = js_string(value)
        if name.lower() not in FILTER_HEADERS and not _default_content_type(name, text):
            kept.append((name, text))
    return tuple(sorted(kept, key=_utf16_key))


def request_identity(method: str, endpoint: str, params: Any = None, headers: dict[str, Any] | None = None,
                     data: Any = None, absolute_url: str | None = None) -> RequestIdentity:
    """The identity Nango's recorder computes for the same request sent through Nango's client.

    A link followed as an absolute URL counts by its path and query, as Nango's paginator follows it; a
    parameter set to None is left out (the request sends none); a list is joined with commas, as
    JavaScript's `String()` joins it."""
    if absolute_url:
        parts = urlsplit(absolute_url)
        target, params = parts.path + (f"?{parts.query}" if parts.query else ""), None
    else:
        target = endpoint or "/"
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    pairs = _form_pairs(query)
    if isinstance(params, str):
        pairs += _form_pairs(params.removeprefix("?"))
    elif isinstance(params, dict):
        for key, value in params.items():
            if value is None:
                continue
            name, text = str(key), js_string(value)
            at = next((i for i, (k, _) in enumerate(pairs) if k == name), None)
            pairs = [p for p in pairs if p[0] != name]
            pairs.insert(len(pairs) if at is None else at, (name, text))
    full = _url_path("/proxy" + ("" if path.startswith("/") else "/") + path)
    endpoint_name = full[len("/proxy/"):] if full.startswith("/proxy/") else full
    return RequestIdentity(method=(method or "get").lower(), endpoint=endpoint_name,
                           params=tuple(sorted(pairs, key=_utf16_key)), headers=_identity_headers(headers),
                           data=_data_identity(data))


def _pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    """Stored parameters or headers ([[name, value], ...] or {name: value}) as sorted string pairs."""
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    return tuple(sorted(((str(k), js_string(v)) for k, v in items), key=_utf16_key))


def _comparable_headers(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        if not _default_content_type(name, value):
            out.setdefault(name.lower(), value)
    return out


# --------------------------------------------------------------------------- recorded answers


@dataclass
class RecordedAnswer:
    """One recorded request and its response."""

    identity: RequestIdentity
    hash: str
    response: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    any_params: bool = False  # an old per-endpoint file: answers whatever the parameters
    body_optional: bool = False  # 0.7x: a recorded request without a body matches any body

    def same_request(self, other: RequestIdentity) -> bool:
        """Nango's second chance when the hash differs (same method and endpoint, found by them): the same
        parameters, headers and body, compared as strings."""
        mine = self.identity
        if self.any_params:
            return True
        if mine.params != other.params:
            return False
        if (mine.headers or other.headers) and _comparable_headers(mine.headers) != _comparable_headers(other.headers):
            return False
        return mine.data == other.data or (self.body_optional and mine.data is None)

    def exchange(self) -> Exchange:
        return Exchange(method=self.identity.method.upper(), path="/" + self.identity.endpoint,
                        query=normalise_query(list(self.identity.params)),
                        body=_json_body(self.identity.data), status=self.status, headers=self.headers,
                        response=self.response)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordedMockError(f"cannot read the recorded mock {file}: {exc}") from None


def _status(raw: Any, file: Path) -> int:
    try:
        return int(raw if raw is not None else 200)
    except (TypeError, ValueError):
        raise RecordedMockError(f"{file}: status {raw!r} is not a number") from None


def _legacy_answer(file: Path) -> RecordedAnswer | None:
    raw = _read_json(file)
    if not isinstance(raw, dict) or not isinstance(raw.get("requestIdentity"), dict):
        return None
    ident = raw["requestIdentity"]
    data = ident.get("data")
    identity = RequestIdentity(method=str(ident.get("method", "get")).lower(), endpoint=str(ident.get("endpoint", "")),
                               params=_pairs(ident.get("params")), headers=_pairs(ident.get("headers")),
                               data=None if data is None else str(data))
    return RecordedAnswer(identity, str(raw.get("requestIdentityHash") or file.stem), raw.get("response"),
                          _status(raw.get("status"), file), dict(raw.get("headers") or {}))


def _script_parts(script: str, variant: str) -> tuple[str, ...]:
    """Where 0.6x files a script's recording below a folder: `<script>/`, a variant's `<script>/<variant>/`
    (its requests below their endpoint's folder, its records, input and output below `mocks/`)."""
    return (script,) if variant == BASE_VARIANT else (script, variant)


class LegacyMocks:
    """The 0.6x files of one script: one file per request under `mocks/nango/<method>/proxy/<endpoint>/<script>/`,
    a variant's under `.../<script>/<variant>/`."""

    def __init__(self, mocks: Path, script: str, variant: str = BASE_VARIANT) -> None:
        self.mocks = mocks
        self.script = script
        self.variant = variant
        self._sub = _script_parts(script, variant)
        self._files: dict[Path, RecordedAnswer | None] = {}

    def _answer(self, file: Path) -> RecordedAnswer | None:
        if file not in self._files:
            self._files[file] = _legacy_answer(file)
        return self._files[file]

    def _folder(self, identity: RequestIdentity) -> Path:
        """Nango's folder for the request; `_url_path` resolved every dot segment, so it stays under mocks/."""
        parts = [p for p in identity.endpoint.split("/") if p]
        return self.mocks.joinpath("nango", identity.method, "proxy", *parts)

    def find(self, identity: RequestIdentity) -> RecordedAnswer | None:
        if not identity.method.isalpha():
            return None
        folder = self._folder(identity).joinpath(*self._sub)
        if folder.is_dir():
            exact = folder / f"{identity.hash}.json"
            if exact.is_file() and (answer := self._answer(exact)) is not None:
                return answer
            for file in sorted(folder.glob("*.json")):
                answer = self._answer(file)
                if answer is not None and answer.same_request(identity):
                    return answer
            return None
        single = folder.with_name(f"{self.script}.json")
        if self.variant == BASE_VARIANT and single.is_file():  # recorded before requests had an identity (and
            # before variants): the endpoint's one response
            if single not in self._files:
                self._files[single] = RecordedAnswer(identity, "", _read_json(single), any_params=True)
            return self._files[single]
        return None

    def near(self, identity: RequestIdentity) -> tuple[Path, list[RecordedAnswer]]:
        """Where Nango looks for this request, and what was recorded there."""
        folder = self._folder(identity).joinpath(*self._sub)
        return folder, [a for f in sorted(folder.glob("*.json")) if (a := self._answer(f))] if folder.is_dir() else []

    def all(self) -> Iterator[RecordedAnswer]:
        root = self.mocks / "nango"
        for file in sorted(root.glob(f"*/proxy/**/{'/'.join(self._sub)}/*.json")):
            answer = self._answer(file)
            if answer is not None and file.parent == self._folder(answer.identity).joinpath(*self._sub):
                yield answer


class UnifiedMocks:
    """The `api` part of a 0.7x `.test.json`: `{method: {"/endpoint": answer or [answers]}}`."""

    def __init__(self, api: Any, file: Path, variant: str = BASE_VARIANT) -> None:
        self.file = file
        self.variant = variant
        self.by_endpoint: dict[tuple[str, str], list[RecordedAnswer]] = {}
        if not isinstance(api, dict):
            raise RecordedMockError(f"{file}: 'api' must be an object of methods")
        for method, endpoints in api.items():
            if not isinstance(endpoints, dict):
                raise RecordedMockError(f"{file}: api.{method} must be an object of endpoints")
            for endpoint, entries in endpoints.items():
                for entry in entries if isinstance(entries, list) else [entries]:
                    self._add(str(method).lower(), str(endpoint).lstrip("/"), entry)

    def _add(self, method: str, endpoint: str, entry: Any) -> None:
        if not isinstance(entry, dict):
            raise RecordedMockError(f"{self.file}: api.{method}./{endpoint} holds {entry!r}, not a recorded response")
        request = entry.get("request")
        data = request.get("data") if isinstance(request, dict) else None
        identity = RequestIdentity(method=method, endpoint=endpoint,
                                   params=_pairs(request.get("params")) if isinstance(request, dict) else (),
                                   headers=_pairs(request.get("headers")) if isinstance(request, dict) else (),
                                   data=_data_identity(data))
        self.by_endpoint.setdefault((method, endpoint), []).append(RecordedAnswer(
            identity, str(entry.get("hash") or ""), entry.get("response"), _status(entry.get("status"), self.file),
            dict(entry.get("headers") or {}), any_params=not isinstance(request, dict), body_optional=True))

    def find(self, identity: RequestIdentity) -> RecordedAnswer | None:
        answers = self.by_endpoint.get((identity.method, identity.endpoint.lstrip("/")), [])
        for answer in answers:
            if answer.hash and answer.hash == identity.hash:
                return answer
            if answer.any_params:
                if len(answers) == 1 and not identity.params:
                    return answer
            elif answer.same_request(identity):
                return answer
        return None

    def near(self, identity: RequestIdentity) -> tuple[Path, list[RecordedAnswer]]:
        return self.file, self.by_endpoint.get((identity.method, identity.endpoint.lstrip("/")), [])

    def all(self) -> Iterator[RecordedAnswer]:
        for answers in self.by_endpoint.values():
            yield from answers


class NoRecordedResponse(UnexpectedRequest):
    """The script made a request Nango's recorded mocks have no answer for."""

    def __init__(self, request: Exchange, identity: RequestIdentity, where: Path, near: list[RecordedAnswer],
                 variant: str = BASE_VARIANT) -> None:
        self.request = request
        self.variant = variant
        shown = "\n".join(f"  {a.identity.describe()}" for a in near[:20]) or "  (none)"
        whose = "" if variant == BASE_VARIANT else f" in the recording of variant {variant!r}"
        AssertionError.__init__(
            self, f"no recorded response for {identity.describe()}{whose} (Nango identity {identity.hash})\n"
                  f"looked in {where}; recorded there for this endpoint:\n{shown}")


class RecordedBook(ResponseBook):
    """Answers from Nango's recorded mocks; the same request always gets the same answer, as in Nango."""

    def __init__(self, source: LegacyMocks | UnifiedMocks) -> None:
        super().__init__()
        self.source = source
        self._by_answer: dict[int, _Mocked] = {}
        for answer in source.all():
            self._track(answer)

    def _track(self, answer: RecordedAnswer) -> _Mocked:
        if id(answer) not in self._by_answer:
            self._by_answer[id(answer)] = _Mocked(answer.exchange(), partial=False)
            self._entries.append(self._by_answer[id(answer)])
        return self._by_answer[id(answer)]

    def answer(self, method: str, endpoint: str, params: Any, data: Any, absolute_url: str | None,
               headers: dict[str, str] | None = None) -> Exchange:
        identity = request_identity(method, endpoint, params, headers, data, absolute_url)
        path, query = split_request(endpoint, params, absolute_url)
        request = Exchange(method=method.upper(), path=path, query=query, body=_json_body(data))
        self.requests.append(request)
        found = self.source.find(identity)
        if found is None:
            error = NoRecordedResponse(request, identity, *self.source.near(identity), variant=self.source.variant)
            self.unexpected.append(error)
            raise error
        entry = self._track(found)
        entry.used += 1
        return entry.exchange


# --------------------------------------------------------------------------- what a run must produce


@dataclass
class Recorded:
    """What Nango's CLI recorded for one script: its answers, its input, and what the run must produce."""

    layout: str  # LEGACY or UNIFIED
    where: Path  # the mocks folder or the .test.json file, for messages
    book: RecordedBook
    input: Any = None
    output: Any = None
    has_output: bool = False
    saves: dict[str, list[Any]] = field(default_factory=dict)  # model -> records, from batchSave
    deletes: dict[str, list[Any]] = field(default_factory=dict)  # model -> records, from batchDelete
    metadata: dict[str, Any] | None = None
    connection_config: dict[str, Any] | None = None
    connection_id: str | None = None
    provider: str | None = None
    variant: str = BASE_VARIANT  # whose recording this is: the variant asked for, or base when it has none
    asked: str = BASE_VARIANT  # the variant the script runs as
    own: Path | None = None  # 0.6x: the folder of the script's (or its variant's) input, output and records

    @property
    def label(self) -> str:
        """The layout, and which variant's recording when a variant was asked for."""
        if self.asked == BASE_VARIANT:
            return self.layout
        if self.variant == self.asked:
            return f"{self.layout}, variant {self.asked}"
        return f"{self.layout}, base recording: none for variant {self.asked}"

    def place(self, model: str | None, name: str) -> str:
        """Where the recording keeps `name` (input, output, batchSave...) of `model`, for messages."""
        if self.layout == UNIFIED:
            key = model if self.variant == BASE_VARIANT or model is None else f"{model}::{self.variant}"
            return f"{'nango.' + name + '.' + key if key else repr(name)} in {self.where}"
        folder = self.own if self.own is not None else self.where
        return str(folder.joinpath(*([model] if model else []), f"{name}.json"))


def unified_file(integration_dir: Path, script: str) -> Path:
    return integration_dir / "tests" / f"{script}.test.json"


def check_variant(variant: str | None) -> str:
    """A variant name that can name a recording's folder (None: base); RecordedMockError otherwise."""
    if variant is None:
        return BASE_VARIANT
    if not variant or variant in (".", "..") or any(c in variant for c in "/\\\0"):
        raise RecordedMockError(f"variant {variant!r}: a variant's recording is a folder named after it, "
                                "so its name cannot be empty, '.', '..' or hold '/' or '\\'")
    return variant


def _model_variant(key: Any) -> tuple[str, str]:
    """A 0.7x batchSave key as (model, variant): Nango names a variant's models `<Model>::<variant>`."""
    model, sep, variant = str(key).partition("::")
    return model, variant if sep else BASE_VARIANT


def _unified_variants(file: Path) -> set[str] | None:
    """The variants whose records a .test.json holds; None when it cannot be read (loading it says why)."""
    try:
        nango = json.loads(file.read_text(encoding="utf-8")).get("nango") or {}
        keys = [k for kind in ("batchSave", "batchDelete") for k in (nango.get(kind) or {})]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return {_model_variant(k)[1] for k in keys}


def _legacy_has(mocks: Path, script: str, variant: str) -> bool:
    own = mocks.joinpath(*_script_parts(script, variant))
    if (own / "output.json").is_file() or (own / "input.json").is_file() or any(own.glob("*/batchSave.json")):
        return True
    # a variant's requests alone are its own: replaying the base ones for it would hide what is missing
    return variant != BASE_VARIANT and next(LegacyMocks(mocks, script, variant).all(), None) is not None


def _own_layout(integration_dir: Path, script: str, variant: str) -> str | None:
    """Which layout holds `variant`'s own recording (0.7x's file first, as for base), or None."""
    file = unified_file(integration_dir, script)
    if file.is_file() and ((found := _unified_variants(file)) is None or variant in found):
        return UNIFIED
    if variant != BASE_VARIANT and _legacy_has(integration_dir / "mocks", script, variant):
        return LEGACY
    return None


def detect(integration_dir: Path, script: str, variant: str = BASE_VARIANT) -> str | None:
    """Which of Nango's layouts holds this script's recording (0.7x's file wins, as in Nango), or None. For a
    variant: its own recording's, else the base recording's, which Nango's test helpers read for every variant."""
    if variant != BASE_VARIANT and (own := _own_layout(integration_dir, script, variant)) is not None:
        return own
    if unified_file(integration_dir, script).is_file():
        return UNIFIED
    return LEGACY if _legacy_has(integration_dir / "mocks", script, BASE_VARIANT) else None


def _records(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordedMockError(f"{where} must hold a list of records, not {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise RecordedMockError(f"{where} must hold an object, not {type(value).__name__}")
    return value


def _load_legacy(integration_dir: Path, script: str, variant: str) -> Recorded:
    mocks = integration_dir / "mocks"
    own = mocks.joinpath(*_script_parts(script, variant))
    recorded = Recorded(LEGACY, mocks, RecordedBook(LegacyMocks(mocks, script, variant)), variant=variant, own=own)
    if (own / "input.json").is_file():
        text = (own / "input.json").read_text(encoding="utf-8")
        try:
            recorded.input = json.loads(text)
        except ValueError:
            recorded.input = text  # Nango writes a string input as it is, unquoted
    if (own / "output.json").is_file():
        recorded.output, recorded.has_output = _read_json(own / "output.json"), True
    for kind, target in (("batchSave", recorded.saves), ("batchDelete", recorded.deletes)):
        for file in sorted(own.glob(f"*/{kind}.json")):
            target[file.parent.name] = _records(_read_json(file), str(file))
    # the connection and its metadata are the connection's: one recording for every variant
    connection = mocks / "nango" / "getConnection.json"
    if connection.is_file():
        raw = _object(_read_json(connection), str(connection)) or {}
        recorded.connection_config = _object(raw.get("connection_config"), f"{connection}: connection_config")
        recorded.metadata = _object(raw.get("metadata"), f"{connection}: metadata")
        recorded.provider = (recorded.connection_config or {}).get("provider")
    metadata = mocks / "nango" / "getMetadata.json"
    if metadata.is_file():
        recorded.metadata = _object(_read_json(metadata), str(metadata))
    return recorded


def _load_unified(integration_dir: Path, script: str, variant: str) -> Recorded:
    file = unified_file(integration_dir, script)
    raw = _object(_read_json(file), str(file)) or {}
    nango = _object(raw.get("nango"), f"{file}: nango") or {}
    recorded = Recorded(UNIFIED, file, RecordedBook(UnifiedMocks(raw.get("api") or {}, file, variant)),
                        input=raw.get("input"), output=raw.get("output"), has_output="output" in raw, variant=variant)
    others: set[str] = set()
    for kind, target in (("batchSave", recorded.saves), ("batchDelete", recorded.deletes)):
        for key, records in (_object(nango.get(kind), f"{file}: nango.{kind}") or {}).items():
            model, of = _model_variant(key)
            if of == variant:
                target[model] = _records(records, f"{file}: nango.{kind}.{key}")
            else:
                others.add(of)
    if others and not recorded.saves and not recorded.deletes:
        whose = ", ".join(repr(v) for v in sorted(others))
        raise RecordedMockError(f"{file} holds the recording of variant {whose}, not the base one: replay it as "
                                "that variant (`nango test NAME --variant VARIANT`, nango_mock's `variant=`)")
    connection = _object(nango.get("getConnection"), f"{file}: nango.getConnection") or {}
    recorded.connection_id = connection.get("connectionId")
    recorded.provider = connection.get("provider")
    recorded.metadata = _object(nango.get("getMetadata"), f"{file}: nango.getMetadata")
    return recorded


def load(integration_dir: Path, script: str, variant: str | None = None) -> Recorded:
    """The recording of `script` in `integration_dir`, run as `variant` (None: base): the variant's own recording,
    else the base one. RecordedMockError names a file that cannot be read."""
    asked = check_variant(variant)
    own = _own_layout(integration_dir, script, asked) if asked != BASE_VARIANT else None
    layout, whose = (own, asked) if own is not None else (detect(integration_dir, script), BASE_VARIANT)
    if layout is None:
        neither = "" if asked == BASE_VARIANT else f" (none for variant {asked!r}, nor a base recording)"
        raise RecordedMockError(f"no mocks recorded by Nango's CLI for {script!r} in {integration_dir}{neither}")
    loader = _load_unified if layout == UNIFIED else _load_legacy
    recorded = loader(integration_dir, script, whose)
    recorded.asked = asked
    return recorded


def align(expected: Any, actual: Any) -> Any:
    """`actual` without the None fields `expected` lacks: TypeScript leaves an unset field out (undefined is
    never written), where Python sets it to None, and Nango's comparison ignores undefined fields."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: align(expected.get(k), v) for k, v in actual.items() if not (v is None and k not in expected)}
    if isinstance(expected, list) and isinstance(actual, list):
        by_id = {_record_id(e): e for e in expected if _record_id(e) is not None}
        return [align(by_id.get(_record_id(v)) if _record_id(v) in by_id else (
            expected[i] if i < len(expected) else None), v) for i, v in enumerate(actual)]
    return actual


def _record_id(value: Any) -> str | None:
    """A record's id, as a key: records align by id first, so that a reordering shows as one."""
    return js_json(value["id"]) if isinstance(value, dict) and "id" in value else None
