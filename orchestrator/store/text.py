"""Text from scripts, made storable whatever bytes it holds.

PostgreSQL refuses NUL (\\x00) in `text` and `\\u0000` in `jsonb`, and a lone surrogate cannot be
encoded as UTF-8 at all: one such character in a log line or an error used to fail the whole
write. Every string a script controls goes through here before it reaches a text or jsonb
column; what was replaced becomes U+FFFD and the caller says so (a `sanitized: true` field on a
log entry, a note on a job's error).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
NOTE = "(NUL bytes or invalid characters replaced by U+FFFD)"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD (the same object when there is none)."""
    return _UNSTORABLE.sub(REPLACEMENT, text) if _UNSTORABLE.search(text) else text


def clean_noted(text: str | None) -> str | None:
    """`clean`, with NOTE appended when something was replaced (for a job's error message)."""
    if text is None:
        return None
    cleaned = clean(text)
    return cleaned if cleaned is text else f"{cleaned} {NOTE}"


def clean_json(value: Any) -> tuple[Any, bool]:
    """Every string in a JSON value (keys included) cleaned; True when something was replaced."""
    if isinstance(value, str):
        cleaned = clean(value)
        return cleaned, cleaned is not value
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for k, v in value.items():
            ck, kc = clean_json(k) if isinstance(k, str) else (k, False)
            cv, vc = clean_json(v)
            changed = changed or kc or vc
            out[ck] = cv
        return (out, True) if changed else (value, False)
    if isinstance(value, list | tuple):
        items = [clean_json(v) for v in value]
        if any(c for _, c in items):
            return [v for v, _ in items], True
        return value, False
    return value, False
