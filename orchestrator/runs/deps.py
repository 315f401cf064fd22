"""What a run needs from the worker process, built once per worker."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import asyncpg
from temporalio.client import Client

from orchestrator.bundles.cache import BundleCache
from orchestrator.config.settings import Settings
from orchestrator.crypto import Sealer
from orchestrator.runner.host import Limits, Runner
from orchestrator.runs.limits import EnvironmentLimiter


@dataclass
class RunDeps:
    """Everything a run needs, built once per worker process."""

    settings: Settings
    pool: asyncpg.Pool
    sealer: Sealer
    bundles: BundleCache
    session: aiohttp.ClientSession
    runner: Runner | None = None  # sandbox tier + warm children; None starts cold children
    temporal: Client | None = None  # to report progress to the run workflow
    limiter: EnvironmentLimiter = field(default_factory=lambda: EnvironmentLimiter(0))

    def limits(self) -> Limits:
        return Limits(memory_mb=self.settings.runner_memory_mb, cpu_seconds=self.settings.runner_cpu_seconds)
