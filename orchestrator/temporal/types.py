"""Workflow and activity arguments and results: plain dataclasses, safe to pass through the workflow sandbox.

Every workflow and every activity takes one of these and returns one of these, so a field can be
added later with a default without breaking histories that are already running. The names a
schedule or a running history already carries (SyncInput, PreparedSync, ...) stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_HEARTBEAT_TIMEOUT_S = 30  # settings.runner_heartbeat_timeout_s's default, for inputs built without settings


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
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S


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
class NotifyInput:
    finalize: FinalizeInput
    summary: SyncSummary


@dataclass
class NotifyResult:
    """What notify_sync did: how many result webhooks the customer's app accepted."""

    delivered: int = 0


@dataclass
class SyncProgress:
    phase: str = "starting"
    job_id: int | None = None
    added: int = 0
    updated: int = 0
    deleted: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScriptJobInput:
    """An action, webhook or event script run for one connection; the job row exists already."""

    environment_id: int
    environment: str
    integration: str
    connection_id: str
    script_name: str
    kind: str  # action | webhook | event
    job_id: int
    input: Any = None
    event: str | None = None
    webhook_payload_id: int | None = None
    max_attempts: int = 0  # the run's attempt budget (0: the activity's retry policy alone keeps count)


@dataclass
class ScriptJobResult:
    ok: bool
    output: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_payload: Any = None


@dataclass
class WebhookInput:
    environment_id: int
    environment: str
    integration: str
    payload_id: int


@dataclass
class WebhookTargets:
    jobs: list[ScriptJobInput] = field(default_factory=list)
    ignored_reason: str | None = None


@dataclass
class EventInput:
    environment_id: int
    environment: str
    integration: str
    connection_id: str
    event: str
    jobs: list[ScriptJobInput] = field(default_factory=list)


@dataclass
class ScriptJobClosed:
    """fail_script_job's result: the job it closed (a no-op when the job had closed already)."""

    job_id: int


@dataclass
class WebhookFinished:
    """finish_webhook's result: the payload whose status it settled."""

    payload_id: int


@dataclass
class ActionWorkflowInput:
    """ActionWorkflow's input: the job plus how long its run may take and how often an infra fault is retried."""

    job: ScriptJobInput
    timeout_s: int
    max_retries: int = 0
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S


@dataclass
class WebhookWorkflowInput:
    webhook: WebhookInput
    timeout_s: int
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S


@dataclass
class WebhookWorkflowResult:
    """How many script runs the payload became (all succeeded: a failed one fails the workflow)."""

    jobs: int = 0
    ignored_reason: str | None = None


@dataclass
class EventWorkflowInput:
    event: EventInput
    timeout_s: int
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S


@dataclass
class EventWorkflowResult:
    """One result per job of the EventInput, in order; a run the platform could not finish is a failed result."""

    results: list[ScriptJobResult] = field(default_factory=list)
