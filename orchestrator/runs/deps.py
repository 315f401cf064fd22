"""What a run needs from the worker process: its Platform plus the worker-only handles."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from orchestrator.bundles.cache import BundleCache
from orchestrator.platform import Platform
from orchestrator.runner.host import Limits, Runner
from orchestrator.runs.limits import EnvironmentLimiter


@dataclass(frozen=True)
class RunDeps(Platform):
    """The worker's Platform plus what only a worker has, built once per worker process."""

    bundle_cache: BundleCache | None = None  # content-addressed local copies of bundles (required to run)
    runner: Runner | None = None  # sandbox tier + warm children; None starts cold children
    limiter: EnvironmentLimiter = field(default_factory=lambda: EnvironmentLimiter(0))

    @classmethod
    def extend(cls, platform: Platform, *, bundle_cache: BundleCache, runner: Runner | None = None,
               limiter: EnvironmentLimiter | None = None) -> RunDeps:
        handles = {f.name: getattr(platform, f.name) for f in fields(Platform)}
        return cls(**handles, bundle_cache=bundle_cache, runner=runner, limiter=limiter or EnvironmentLimiter(0))

    @property
    def cache(self) -> BundleCache:
        assert self.bundle_cache is not None, "a worker's RunDeps always has a bundle cache"
        return self.bundle_cache

    def limits(self) -> Limits:
        return Limits(memory_mb=self.settings.runner_memory_mb, cpu_seconds=self.settings.runner_cpu_seconds,
                      rpc_in_flight=self.settings.runner_max_rpc_in_flight,
                      file_size_mb=self.settings.runner_file_size_mb)
