"""Framing for the runner's RPC channel: 4-byte big-endian length, then one JSON document.

Imported by both sides, so it uses only the standard library plus orjson when present (the
child's import path may not have it). Frames are bounded so a hostile child cannot make the
host allocate without limit.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

try:
    import orjson as _orjson

    def dumps(value: Any) -> bytes:
        return _orjson.dumps(value, option=_orjson.OPT_NON_STR_KEYS)

    loads = _orjson.loads
except ImportError:  # pragma: no cover - the child without site-packages
    import json as _json

    def dumps(value: Any) -> bytes:
        return _json.dumps(value, separators=(",", ":"), default=str).encode()

    loads = _json.loads

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(message: Any) -> bytes:
    body = dumps(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"message of {len(body)} bytes exceeds the {MAX_FRAME} byte frame limit")
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next message, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from None
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("stream ended inside a frame") from None
    try:
        return loads(body)
    except ValueError as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
