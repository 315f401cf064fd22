"""Job-closed notifications: the worker says when it closed a job; an API process awaiting it hears at once.

An awaited action's answer is its job row (`api/actions.py`): once the row is closed, waiting for Temporal to
complete the workflow and the client's long poll to return it adds ~15-20 ms and tells nothing new. The
worker sends `pg_notify` after each close; each API process keeps one LISTEN connection. Best effort: a
notification lost (listener down, reconnecting; or a transaction-mode pooler such as pgbouncer in front,
where LISTEN hears nothing) leaves the caller on the workflow's result, as before.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from orchestrator.config.settings import Settings

log = structlog.get_logger(__name__)

CHANNEL = "nango_job_closed"
RECONNECT_S = 2.0  # pause between two attempts to restore a lost listener connection
CONNECT_TIMEOUT_S = 10.0


async def notify_closed(conn: asyncpg.Connection, job_id: int) -> None:
    """Tell the listening API processes that this job's row is closed (after the close has committed)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(job_id))


class JobCloseListener:
    """One LISTEN connection per API process; `expect(job_id)` before the job can close, then await it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def start(self) -> None:
        """Listen now if the database answers, and keep listening (reconnecting) in the background."""
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._listen()
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self._conn is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._conn.close(timeout=5)
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def expect(self, job_id: int) -> asyncio.Future[None]:
        """A future done when the job is said to be closed (never done while the listener is down)."""
        future = self._waiting.get(job_id)
        if future is None:
            future = self._waiting[job_id] = asyncio.get_running_loop().create_future()
        return future

    def forget(self, job_id: int) -> None:
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.settings.database_url.get_secret_value(),
                                     password=self.settings.database_password.get_secret_value() or None,
                                     timeout=CONNECT_TIMEOUT_S)
        try:
            await conn.add_listener(CHANNEL, self._heard)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(lambda _: self._lost.set())
        self._lost.clear()
        self._conn = conn

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            future = self._waiting.get(int(payload))
        except ValueError:
            return
        if future is not None and not future.done():
            future.set_result(None)

    async def _keep(self) -> None:
        """Restore a lost listener (a database restart, a failover); callers meanwhile use the workflow's result."""
        while True:
            if self.listening:
                await self._lost.wait()
                log.warning("job_close_listener_lost", note="awaited actions answer from the workflow until back")
            self._conn = None
            try:
                await self._listen()
                log.info("job_close_listener_listening")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.info("job_close_listener_retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(RECONNECT_S)
