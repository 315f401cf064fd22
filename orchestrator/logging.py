"""structlog set up once per process; stdlib loggers (temporalio, aiohttp, asyncpg) share the format."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import re
import sys
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import structlog
import structlog.tracebacks
from pydantic import SecretStr

_SECRET_KEYS = ("token", "secret", "password", "passwd", "authorization", "api_key", "apikey", "credentials",
                "cookie", "dsn", "private_key", "encryption_key", "signature")
MASK = "***"
# Hidden values shorter than this are not masked: masking "true" or "1" everywhere would garble lines and
# hide nothing a guess would not find.
MIN_HIDDEN_CHARS = 6
# How many hidden values one context (a request, a run) keeps; the newest win.
MAX_HIDDEN_PER_CONTEXT = 512

# Secrets by their shape, wherever they appear in a line (an exception message, a URL, a repr):
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # our secret keys (crypto.new_secret_key, `nango dev`'s sk_dev_...) and Nango-style nango_sk_...
    (re.compile(r"(?<![A-Za-z0-9])((?:nango_)?sk_)[A-Za-z0-9_\-]{16,}"), r"\1" + MASK),
    (re.compile(r"(nango_connect_session_)[A-Za-z0-9_\-]+"), r"\1" + MASK),
    # Authorization header values
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1\2" + MASK),
    # the password of a URL: postgres://user:pw@host
    (re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s\"']*:)[^@/\s\"']+@"), r"\1" + MASK + "@"),
    # the OAuth callback's code and state in a query string
    (re.compile(r"([?&](?:code|state)=)[^&\s\"']+"), r"\1" + MASK),
    # secret-looking query parameters and key/value pairs (a token in a callback URL or a provider's answer)
    (re.compile(r"(?i)(\b[A-Za-z_\-]*(?:token|secret|password|passwd|api_?key|signature)"
                r"[A-Za-z_\-]*[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\s\"'&,;}\]]+"), r"\1" + MASK),
]
_global_hidden: set[str] = set()  # settings' secrets: the whole process hides them (see hide_settings_secrets)
_hidden: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("hidden_secrets", default=())


def _walk_secret_strings(value: Any, key: str = "") -> list[str]:
    """The strings of a secret value worth hiding: a bare string, or the leaves under secret-looking keys."""
    if isinstance(value, str):
        return [value] if not key or _is_secret_key(key) else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _walk_secret_strings(v, str(k))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _walk_secret_strings(v, key)]
    return []


def hide(*values: Any) -> None:
    """Mask these values in every log line written from the current context (this request, this run, the
    tasks it starts). Strings are hidden whole; dicts and lists by their leaves under secret-looking keys."""
    found = [s for v in values for s in _walk_secret_strings(v) if len(s) >= MIN_HIDDEN_CHARS]
    if not found:
        return
    current = _hidden.get()
    new = tuple(s for s in found if s not in current)
    if new:
        _hidden.set((current + new)[-MAX_HIDDEN_PER_CONTEXT:])


def clear_hidden() -> None:
    """Start a new context (a request) with only the process' hidden values."""
    _hidden.set(())


def hide_settings_secrets(settings: Any) -> None:
    """Hide every SecretStr of the settings in every log line of this process (and a URL's password alone)."""
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if not isinstance(value, SecretStr):
            continue
        raw = value.get_secret_value()
        if len(raw) < MIN_HIDDEN_CHARS:
            continue
        _global_hidden.add(raw)
        if "://" in raw:
            with contextlib.suppress(ValueError):
                password = urlsplit(raw).password
                if password and len(password) >= MIN_HIDDEN_CHARS:
                    _global_hidden.add(unquote(password))
                    _global_hidden.add(password)


@functools.lru_cache(maxsize=64)
def _values_pattern(values: frozenset[str]) -> re.Pattern[str]:
    variants = {v for s in values for v in (s, json.dumps(s)[1:-1])}  # also as a JSON renderer escapes it
    return re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)))


def scrub_text(text: str) -> str:
    """A string with every hidden value and every secret-shaped token masked."""
    values = frozenset(_global_hidden.union(_hidden.get()))
    if values:
        text = _values_pattern(values).sub(MASK, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(s in lowered for s in _SECRET_KEYS)


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and _is_secret_key(k) and v not in (None, "") else _scrub(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Mask values whose key looks secret, so a token never reaches a log line (nested dicts too)."""
    for key in list(event_dict):
        if _is_secret_key(key) and event_dict[key] not in (None, ""):
            event_dict[key] = MASK
    return event_dict


def rpc_summary(method: str, params: Any) -> dict[str, Any]:
    """What a log line may say about an RPC call: its method, model, record count and size, never the records."""
    summary: dict[str, Any] = {"method": method}
    if not isinstance(params, dict):
        return summary
    if isinstance(params.get("model"), str):
        summary["model"] = params["model"][:200]
    for name in ("records", "ids"):
        if isinstance(params.get(name), list | tuple):
            summary[name] = len(params[name])
    summary["params"] = sorted(str(k)[:64] for k in params)[:20]
    return summary


class _Output:
    """The last processor: tracebacks without local variables (they held secret keys and whole record
    batches), the chosen renderer, then every hidden value and secret-shaped token masked in the line.

    One instance per process, switched in place by configure_logging, so loggers cached on first use
    follow a later configuration too."""

    def __init__(self) -> None:
        self.fmt = "json"
        self.colors = False
        self._json_tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False))
        self._renderers: dict[str, Any] = {}
        self.configure("json", colors=False)

    def configure(self, fmt: str, *, colors: bool) -> None:
        self.fmt, self.colors = fmt, colors
        self._renderers = {
            "json": structlog.processors.JSONRenderer(),
            # plain tracebacks: the default (rich, better-exceptions) would print local variables
            "console": structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback),
        }

    def __call__(self, logger: Any, name: str, event_dict: dict[str, Any]) -> str:
        if self.fmt == "console":
            event_dict = structlog.processors.format_exc_info(logger, name, event_dict)
        else:
            event_dict = self._json_tracebacks(logger, name, event_dict)
        event_dict = {k: MASK if _is_secret_key(k) and v not in (None, "") else _scrub(v)
                      for k, v in event_dict.items()}
        rendered = self._renderers.get(self.fmt, self._renderers["json"])(logger, name, event_dict)
        return scrub_text(rendered if isinstance(rendered, str) else str(rendered))


class _Stream:
    """Where log lines go, switched in place by configure_logging (cached loggers keep this object)."""

    def __init__(self) -> None:
        self.target: TextIO = sys.stderr

    def write(self, text: str) -> int:
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


_OUTPUT = _Output()
_STREAM = _Stream()


def configure_logging(level: str = "INFO", fmt: str | None = None, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger for this process; calling it again switches the format
    and the stream in place (tests capture the rendered lines that way)."""
    target = stream or sys.stderr
    fmt = fmt or os.environ.get("LOG_FORMAT") or ("console" if target.isatty() else "json")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    _OUTPUT.configure(fmt, colors=fmt == "console" and target.isatty())
    _STREAM.target = target
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[*shared, _OUTPUT],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=_STREAM),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_STREAM)
    # temporalio, aiohttp and asyncpg log through the stdlib: the same chain, the same traceback rules
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
        structlog.stdlib.ProcessorFormatter.remove_processors_meta, _OUTPUT]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # the access log's request line carries query strings (connect_session_token, OAuth code and state): off
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
