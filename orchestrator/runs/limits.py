"""Per-run and per-environment limits on one worker: a noisy script or environment cannot take it all.

`EnvironmentLimiter` gives each environment a share of the worker's slots of each kind (by
default half, at least one). `RunQuotas` and `LogBudget` are the per-run caps the trusted host
applies to what a script sends (log lines and bytes, records per call, record size); the RPC
calls in flight are capped by the runner (`runner.host.Limits.rpc_in_flight`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from orchestrator import metrics
from orchestrator.errors import TransientError
from orchestrator.sdk import contract

if TYPE_CHECKING:
    from orchestrator.config.settings import Settings

log = structlog.get_logger(__name__)

KINDS = ("sync", "action", "webhook", "event")
# A sync that finds its environment's share full waits this long, then gives its worker slot back
# (Temporal retries it with backoff), so waiting syncs of one environment never fill the worker.
GIVE_BACK_AFTER_S = 5.0


class EnvironmentBusyError(TransientError):
    """The environment's share of this worker's slots is in use: retried later, on any worker."""

    code = "environment_busy"


def environment_shares(settings: Settings) -> dict[str, int]:
    """Slots per environment for each kind, from WORKER_MAX_CONCURRENT_PER_ENVIRONMENT (empty: no limit)."""
    slots = {"sync": settings.worker_max_concurrent_syncs, "action": settings.worker_max_concurrent_actions,
             "webhook": settings.worker_max_concurrent_webhooks, "event": settings.worker_max_concurrent_events}
    per = settings.worker_max_concurrent_per_environment
    if per < 0:
        return {}
    if per == 0:
        return {kind: max(1, n // 2) for kind, n in slots.items()}
    return {kind: per for kind in slots}


class EnvironmentLimiter:
    """Concurrent runs of one environment on this worker, per kind.

    `EnvironmentLimiter(n)` gives every kind `n` slots per environment (0 or less: no limit);
    `EnvironmentLimiter(shares={...})` sets them per kind (`environment_shares`).
    """

    def __init__(self, per_environment: int = 0, *, shares: dict[str, int] | None = None,
                 give_back_after_s: float = GIVE_BACK_AFTER_S) -> None:
        self.per_environment = per_environment
        self.shares = dict(shares) if shares is not None else (
            {kind: per_environment for kind in KINDS} if per_environment > 0 else {})
        self.give_back_after_s = give_back_after_s
        self._slots: dict[tuple[int, str], asyncio.Semaphore] = {}
        self._noted: dict[object, None] = {}  # runs already told their share is full (a retried sync once)

    @classmethod
    def from_settings(cls, settings: Settings) -> EnvironmentLimiter:
        return cls(shares=environment_shares(settings))

    @contextlib.asynccontextmanager
    async def slot(self, environment_id: int, kind: str = "sync", on_full: Callable[[str], None] | None = None,
                   key: object = None, environment: str = "") -> AsyncIterator[None]:
        """Hold one of the environment's slots of `kind` for the body.

        When the share is full, `on_full` hears why (once per `key`, the job: a retried run is told
        once). A sync then waits at most `give_back_after_s`, other kinds not at all, before raising
        EnvironmentBusyError: the worker's slot is freed for other environments and the run is retried
        later (a sync by its activity's retry policy, the others by their workflow's timer).
        The body counts in `nango_worker_slots_in_use` under `environment` (its name; the id when not given).
        """
        in_use = metrics.SLOTS_IN_USE.labels(environment or str(environment_id), kind)
        share = self.shares.get(kind, 0)
        if share <= 0:
            with in_use.track_inprogress():
                yield
            return
        sem = self._slots.setdefault((environment_id, kind), asyncio.Semaphore(share))
        if sem.locked():
            why = (f"this environment already runs {share} {kind} script(s) on this worker, its share "
                   f"(WORKER_MAX_CONCURRENT_PER_ENVIRONMENT); the run waits for one to finish")
            log.info("environment_share_full", environment_id=environment_id, kind=kind, share=share)
            if on_full is not None and (key is None or key not in self._noted):
                if key is not None:
                    self._noted[key] = None
                    if len(self._noted) > 10_000:
                        del self._noted[next(iter(self._noted))]
                on_full(why)
            # A sync waits a little (its runs are long, a slot may free soon); an action, webhook or event
            # script gives its worker slot back at once: its workflow waits on a timer instead, so runs over
            # one environment's share never hold the worker's slots that other environments need.
            wait_s = self.give_back_after_s if kind == "sync" else 0.0
            try:
                await asyncio.wait_for(sem.acquire(), wait_s)
            except TimeoutError:
                raise EnvironmentBusyError(why + " (its worker slot is given back; it is retried)") from None
        else:
            await sem.acquire()
        try:
            with in_use.track_inprogress():
                yield
        finally:
            sem.release()


@dataclass(frozen=True)
class RunQuotas:
    """What one run may send the host: log lines and bytes, records per batch call, bytes per record."""

    log_lines: int = 10_000
    log_bytes: int = 10 * 1024 * 1024
    records_per_batch: int = contract.MAX_RECORDS_PER_BATCH
    record_bytes: int = contract.MAX_RECORD_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> RunQuotas:
        return cls(log_lines=settings.runner_max_log_lines, log_bytes=settings.runner_max_log_bytes,
                   records_per_batch=settings.runner_max_records_per_batch,
                   record_bytes=settings.runner_max_record_bytes)


class LogBudget:
    """Counts a run's log lines and bytes; past either cap every later line is dropped, and counted.

    Once a cap is hit nothing more is stored (so the job holds at most the cap plus one note), and
    a dropped line costs only this count: a flood of logs does no redaction, encoding or writes.
    """

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines = 0
        self.bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self.hit: str | None = None  # the setting whose cap was reached first

    @property
    def exhausted(self) -> bool:
        return self.hit is not None

    def admit(self, size: int) -> bool:
        """Whether a line of `size` bytes may be stored (and count it either way)."""
        if self.hit is None:
            if self.lines + 1 > self.max_lines:
                self.hit = "lines"
            elif self.bytes + size > self.max_bytes:
                self.hit = "bytes"
            else:
                self.lines += 1
                self.bytes += size
                return True
        self.dropped += 1
        self.dropped_bytes += size
        return False

    def note(self) -> str | None:
        """The one entry that says what was dropped, or None when nothing was."""
        if not self.dropped:
            return None
        setting = (f"RUNNER_MAX_LOG_LINES={self.max_lines}" if self.hit == "lines"
                   else f"RUNNER_MAX_LOG_BYTES={self.max_bytes}")
        return f"truncated: {self.dropped} more log lines not stored (this run reached its log cap, {setting})"
