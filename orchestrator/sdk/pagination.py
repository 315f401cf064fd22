"""Pagination strategies: pure request/response bookkeeping, no I/O (the helper does the fetching).

Each paginator follows one shape: `first_request` sets up the initial parameters,
`next_request` looks at the page just fetched and returns the next request or None to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit


@dataclass
class PaginationConfig:
    type: Literal["cursor", "link", "offset", "page"] = "cursor"
    limit: int | None = None
    limit_name_in_request: str | None = None
    response_path: str | None = None
    cursor_path_in_response: str | None = None
    cursor_name_in_request: str | None = None
    link_rel_in_response_header: str | None = None
    link_path_in_response_body: str | None = None
    offset_name_in_request: str | None = None
    offset_start_value: int = 0
    offset_calculation_method: Literal["by-response-size", "per-page"] = "by-response-size"
    page_name_in_request: str | None = None
    page_start_value: int = 1
    in_body: bool = False

    @classmethod
    def field_names(cls) -> set[str]:
        return set(cls.__dataclass_fields__)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PaginationConfig:
        known = cls.field_names()
        config = cls(**{k: v for k, v in raw.items() if k in known})
        if config.type not in ("cursor", "link", "offset", "page"):
            raise ValueError(f"unknown pagination type {config.type!r}: use cursor, link, offset or page")
        if config.limit is not None and (not isinstance(config.limit, int) or config.limit <= 0):
            raise ValueError(f"pagination limit must be a positive integer, got {config.limit!r}")
        if config.type == "cursor" and not (config.cursor_path_in_response and config.cursor_name_in_request):
            raise ValueError("cursor pagination needs cursor_path_in_response and cursor_name_in_request")
        if config.type == "offset" and not config.offset_name_in_request:
            raise ValueError("offset pagination needs offset_name_in_request")
        if config.type == "page" and not config.page_name_in_request:
            raise ValueError("page pagination needs page_name_in_request")
        return config


@dataclass
class Request:
    endpoint: str
    params: dict[str, Any] = field(default_factory=dict)
    data: Any = None
    absolute_url: str | None = None  # a link to follow as given


def dig(value: Any, path: str | None) -> Any:
    """Follow a dotted path ("data.items") into a response body; missing -> None."""
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def parse_link_header(header: str | None) -> dict[str, str]:
    """RFC 8288 Link header -> {rel: url}."""
    links: dict[str, str] = {}
    if not header:
        return links
    for part in header.split(","):
        section = part.strip().split(";")
        if len(section) < 2:
            continue
        url = section[0].strip()
        if not (url.startswith("<") and url.endswith(">")):
            continue
        for param in section[1:]:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "rel":
                for rel in value.strip().strip('"').split():
                    links[rel] = url[1:-1]
    return links


class Paginator:
    """Stateful walk over one paginated endpoint."""

    def __init__(self, config: PaginationConfig, endpoint: str, params: dict[str, Any] | None,
                 data: Any, method: str) -> None:
        self.config = config
        self.method = method.upper()
        self.base = Request(endpoint, dict(params or {}), data)
        self.in_body = config.in_body or self.method in ("POST", "PUT", "PATCH")
        self._seen_cursors: set[str] = set()
        self._offset = config.offset_start_value
        self._page = config.page_start_value
        self.last_param: Any = None  # what the next request sends: cursor, link, offset or page

    def _with(self, request: Request, name: str | None, value: Any) -> Request:
        if not name:
            return request
        if self.in_body:
            body = dict(request.data or {})
            body[name] = value
            return Request(request.endpoint, dict(request.params), body)
        params = dict(request.params)
        params[name] = value
        return Request(request.endpoint, params, request.data)

    def first_request(self) -> Request:
        req = self.base
        if self.config.limit is not None:
            req = self._with(req, self.config.limit_name_in_request, self.config.limit)
        if self.config.type == "offset":
            req = self._with(req, self.config.offset_name_in_request, self._offset)
        if self.config.type == "page":
            req = self._with(req, self.config.page_name_in_request, self._page)
        return req

    def page_items(self, body: Any) -> list[Any]:
        items = dig(body, self.config.response_path)
        if items is None:
            return []
        return items if isinstance(items, list) else [items]

    def next_request(self, current: Request, body: Any, headers: dict[str, str], items: list[Any]
                     ) -> Request | None:
        if not items:
            return None
        if self.config.limit and len(items) < self.config.limit:
            return None
        kind = self.config.type
        if kind == "cursor":
            cursor = dig(body, self.config.cursor_path_in_response)
            if cursor in (None, "") or str(cursor) in self._seen_cursors:
                return None
            self._seen_cursors.add(str(cursor))
            self.last_param = cursor
            return self._with(current, self.config.cursor_name_in_request, cursor)
        if kind == "link":
            url: str | None = None
            if self.config.link_path_in_response_body:
                found = dig(body, self.config.link_path_in_response_body)
                url = str(found) if found else None
            else:
                rel = self.config.link_rel_in_response_header or "next"
                lowered = {k.lower(): v for k, v in headers.items()}
                url = parse_link_header(lowered.get("link")).get(rel)
            if not url or url in self._seen_cursors:
                return None
            self._seen_cursors.add(url)
            self.last_param = url
            if url.startswith(("http://", "https://")):
                return Request(current.endpoint, {}, current.data, absolute_url=url)
            parts = urlsplit(url)
            return Request(parts.path, dict(parse_qsl(parts.query)), current.data)
        if kind == "offset":
            if self.config.offset_calculation_method == "per-page":
                self._offset += 1
            else:
                self._offset += len(items)
            self.last_param = self._offset
            return self._with(current, self.config.offset_name_in_request, self._offset)
        if kind == "page":
            self._page += 1
            self.last_param = self._page
            return self._with(current, self.config.page_name_in_request, self._page)
        return None
