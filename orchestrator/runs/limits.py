"""Per-environment concurrency on one worker: a noisy environment cannot take every slot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class EnvironmentLimiter:
    def __init__(self, per_environment: int) -> None:
        self.per_environment = per_environment
        self._slots: dict[int, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, environment_id: int) -> AsyncIterator[None]:
        if self.per_environment <= 0:
            yield
            return
        sem = self._slots.setdefault(environment_id, asyncio.Semaphore(self.per_environment))
        async with sem:
            yield
