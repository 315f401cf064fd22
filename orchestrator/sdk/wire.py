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

    def loads(body: bytes | memoryview) -> Any:
        return _json.loads(bytes(body))

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


def encode(message: Any) -> bytes:
    body = dumps(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"message of {len(body)} bytes exceeds the {MAX_FRAME} byte frame limit")
    return HEADER.pack(len(body)) + body


BODY_RATE = 4 * 1024 * 1024  # bytes per second a frame's deadline allows on top of its base (generous: a
# local socket moves a 64 MiB frame in well under a second)


def frame_deadline(size: int, timeout_s: float) -> float:
    """Seconds a frame of `size` bytes may take once its first byte has arrived."""
    return timeout_s + size / BODY_RATE


async def read_frame(reader: asyncio.StreamReader, *, body_timeout_s: float | None = None) -> Any | None:
    """The next message, or None at a clean end of stream.

    Waiting for a frame to start is never limited. With `body_timeout_s` (the host reading a
    child), a frame that has started must complete within `frame_deadline(size, body_timeout_s)`:
    a peer that announces N bytes and stalls is a FrameError, not a run held until its time limit.
    A frame already whole in the reader's buffer (the usual case: a peer writes each frame at once)
    is taken without arming any deadline: there is nothing left to wait for."""
    buffered = getattr(reader, "_buffer", None)  # CPython's StreamReader; elsewhere the general path below
    if buffered is not None and len(buffered) >= HEADER.size:
        size = _size(bytes(buffered[:HEADER.size]))
        if len(buffered) >= HEADER.size + size:
            frame = await reader.readexactly(HEADER.size + size)  # returns at once: the bytes are here
            return _decode(memoryview(frame)[HEADER.size:])
    try:
        first = await reader.readexactly(1)
    except asyncio.IncompleteReadError:
        return None
    if body_timeout_s is None:
        return _decode(await _body(reader, _size(first + await _header_rest(reader))))
    started = asyncio.get_running_loop().time()
    size: int | None = None
    try:
        async with asyncio.timeout_at(started + body_timeout_s) as deadline:  # one timer for the whole frame
            size = _size(first + await _header_rest(reader))
            deadline.reschedule(started + frame_deadline(size, body_timeout_s))
            body = await _body(reader, size)
    except TimeoutError:
        what = f"a frame of {size} bytes" if size is not None else "a frame header"
        raise FrameError(f"{what} did not complete within {frame_deadline(size or 0, body_timeout_s):g} s of its "
                         f"first byte (protocol violation; RUNNER_FRAME_TIMEOUT_S={body_timeout_s:g})") from None
    return _decode(body)


async def _header_rest(reader: asyncio.StreamReader) -> bytes:
    return await _exactly(reader, HEADER.size - 1, "stream ended inside a frame header")


def _size(header: bytes) -> int:
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
    return size


async def _exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise FrameError(what) from None


async def _body(reader: asyncio.StreamReader, size: int) -> bytes:
    return await _exactly(reader, size, "stream ended inside a frame")


def _decode(body: bytes | memoryview) -> Any:
    try:
        return loads(body)
    except ValueError as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
