"""The child's end of the RPC channel: many calls in flight, answered by id.

The first call of a turn of the event loop leaves at once (a lone call waits for nothing, and costs
no extra turn); the calls that follow it in the same turn (an `asyncio.gather` of many) leave
together at the end of the turn, so the host wakes twice for all of them, not once per call.
Notifications (log lines) flush first and go out at once, in order: a log line written just before
a crash is never held back.
"""

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
        self._outbox: list[bytes] = []  # call frames waiting for the end of this loop turn
        self._turn_open = False  # a frame already left in this turn: the next ones wait for its end

    def start(self) -> None:
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await wire.read_frame(self._reader)
                if msg is None:
                    break
                self._turn_open = False  # a frame came in: this is a later turn than the last write
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
        if self._turn_open:
            if not self._outbox:
                asyncio.get_running_loop().call_soon(self._end_turn)
            self._outbox.append(frame)
        else:
            self.flush()
            self._writer.write(frame)
            self._turn_open = True
        await self._writer.drain()
        return await fut

    def _end_turn(self) -> None:
        self._turn_open = False
        self.flush()

    def flush(self) -> None:
        """Write the call frames held back in this loop turn, in one write."""
        if self._outbox:
            data = b"".join(self._outbox) if len(self._outbox) > 1 else self._outbox[0]
            self._outbox.clear()
            self._writer.write(data)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        frame = wire.encode({"method": method, "params": params})
        self.flush()
        self._writer.write(frame)

    async def drain(self) -> None:
        self.flush()
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
