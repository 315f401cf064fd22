"""The frontend SDK's sockets wait here for their OAuth flow's outcome: one database poll for all of them.

Each open `/connect/ws` socket used to poll PostgreSQL four times a second for up to 15 minutes, and the route
is public (Nango's frontend SDK opens it before it has a session token), so sockets cost a query each per poll
without bound. Now one loop per API process asks once per poll for every waiting socket, and at most
`MAX_SOCKETS` wait at once; the next is refused before its upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from orchestrator.api.keys import PLATFORM
from orchestrator.store import oauth as oauth_repo

log = structlog.get_logger(__name__)

POLL_S = 0.25
MAX_SOCKETS = 2_000  # per API process; an OAuth popup holds one for at most a quarter of an hour


class SocketResults:
    """Futures of the waiting sockets, by their client id, settled by one polling task while any wait."""

    def __init__(self, pool: asyncpg.Pool, *, max_sockets: int = MAX_SOCKETS, poll_s: float = POLL_S) -> None:
        self.pool = pool
        self.max_sockets = max_sockets
        self.poll_s = poll_s
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def full(self) -> bool:
        return len(self._waiting) >= self.max_sockets

    def wait(self, client_id: str) -> asyncio.Future[dict[str, Any]]:
        """The outcome of the flow carrying `client_id`, once the callback has stored it. `forget` it after."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[client_id] = future
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        return future

    def forget(self, client_id: str) -> None:
        future = self._waiting.pop(client_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def _poll(self) -> None:
        while self._waiting:
            try:
                async with self.pool.acquire() as conn:
                    found = await oauth_repo.results_for_sockets(conn, list(self._waiting))
            except (OSError, asyncpg.PostgresError) as exc:  # the next poll tries again; sockets keep waiting
                log.warning("connect_socket_poll_failed", error=f"{type(exc).__name__}: {exc}")
                found = {}
            for client_id, result in found.items():
                future = self._waiting.pop(client_id, None)
                if future is not None and not future.done():
                    future.set_result(result)
            await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        for client_id in list(self._waiting):
            self.forget(client_id)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


SOCKETS = web.AppKey("connect_socket_results", SocketResults)


async def socket_results(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the platform's): the waiting sockets' shared poll."""
    app[SOCKETS] = SocketResults(app[PLATFORM].pool)
    try:
        yield
    finally:
        await app[SOCKETS].close()
