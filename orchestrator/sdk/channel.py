"""The child's end of the RPC channel: many calls in flight, answered by id."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from orchestrator.sdk import wire
from orchestrator.sdk.errors import HttpError, NangoError


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await wire.read_frame(self._reader)
                if msg is None:
                    break
                fut = self._pending.pop(msg.get("id"), None)
                if fut is None or fut.done():
                    continue
                if "error" in msg:
                    fut.set_exception(_to_exception(msg["error"]))
                else:
                    fut.set_result(msg.get("result"))
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(NangoError("channel_closed", "the platform closed the channel"))
            self._pending.clear()

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        msg_id = next(self._ids)
        frame = wire.encode({"id": msg_id, "method": method, "params": params})  # what cannot cross fails here,
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()  # before any reply is awaited
        self._pending[msg_id] = fut
        self._writer.write(frame)
        await self._writer.drain()
        return await fut

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._writer.write(wire.encode({"method": method, "params": params}))

    async def drain(self) -> None:
        await self._writer.drain()

    async def close(self, linger: float = 0.0) -> None:
        """Stop reading; with `linger`, first wait that long for the host to hang up (its last replies)."""
        if self._reader_task and linger > 0:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader_task), linger)
            except (TimeoutError, asyncio.CancelledError, Exception):
                pass
        if self._reader_task:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except (asyncio.CancelledError, Exception):
                pass


def _to_exception(error: dict[str, Any]) -> Exception:
    kind = error.get("type", "error")
    message = error.get("message", "platform call failed")
    if kind == "http_error":
        return HttpError(message, int(error.get("status", 0)), error.get("data"), error.get("headers"))
    details = {k: v for k, v in error.items() if k not in ("type", "message")}
    return NangoError(kind, message, **details)
