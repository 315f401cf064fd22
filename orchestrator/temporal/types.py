"""Workflow and activity arguments: plain dataclasses, safe to pass through the workflow sandbox.

One dataclass in, one out, so fields can be added with defaults without breaking histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SyncInput:
    environment_id: int
    environment: str
    integration: str
    connection_id: str
    sync_name: str
    variant: str = "base"


@dataclass
class PreparedSync:
    job_id: int
    connection_pk: int
    bundle_key: str
    bundle_sha256: str
    module_path: str
    started_at: str
    timeout_s: int
    last_sync_date: str | None = None
    full_resync: bool = False
    track_deletes: bool = False
    models: list[str] = field(default_factory=list)
    skip_reason: str | None = None


@dataclass
class RunSyncInput:
    sync: SyncInput
    prepared: PreparedSync


@dataclass
class RunSyncResult:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class FinalizeInput:
    sync: SyncInput
    prepared: PreparedSync
    success: bool
    error: str | None = None
    error_details: str | None = None
    cancelled: bool = False


@dataclass
class SyncSummary:
    job_id: int | None
    status: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class SyncProgress:
    phase: str = "starting"
    job_id: int | None = None
    added: int = 0
    updated: int = 0
    deleted: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
