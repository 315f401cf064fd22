"""Response shapes of the public API, as pydantic models: the OpenAPI document is generated from them.

Request bodies live next to their routes (they validate input there); these describe what comes back,
in Nango's wire format (see shared/reference/nango-node-client-wire.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class ApiErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(examples=["unknown_connection"])
    message: str


class ApiError(BaseModel):
    """Every error: `{"error": {"code", "message", ...}}`."""
    error: ApiErrorBody


class Success(BaseModel):
    success: bool


class IntegrationCredentialsOut(BaseModel):
    type: str | None
    client_id: str | None
    client_secret: str | None
    scopes: str | None
    authorization_url: str | None = None
    token_url: str | None = None


class IntegrationOut(BaseModel):
    """Nango's ApiPublicIntegration; `webhook_*` and `credentials` only with `?include=`."""
    unique_key: str
    provider: str
    display_name: str
    logo: str
    forward_webhooks: bool
    created_at: datetime
    updated_at: datetime
    webhook_url: str | None = None
    webhook_routing: dict[str, Any] | None = None
    has_webhook_secret: bool | None = None
    webhook_accept_unsigned: bool | None = None
    credentials: IntegrationCredentialsOut | None = None


class IntegrationList(BaseModel):
    data: list[IntegrationOut]


class IntegrationEnvelope(BaseModel):
    data: IntegrationOut


class ConnectionErrorOut(BaseModel):
    """Nango's `{type, log_id}`; for `auth` (a refused token refresh) also what the provider said and when."""
    type: str
    log_id: str
    message: str | None = None
    failed_at: datetime | None = None


class ConnectionSummary(BaseModel):
    """An entry of `GET /connections`: `created` (not created_at) and no credentials."""
    id: int
    connection_id: str
    provider_config_key: str
    provider: str
    created: datetime
    metadata: dict[str, Any] | None
    errors: list[ConnectionErrorOut]
    end_user: dict[str, Any] | None
    tags: dict[str, str]


class ConnectionList(BaseModel):
    connections: list[ConnectionSummary]


class CredentialsOut(BaseModel):
    """`{type: OAUTH2, access_token, refresh_token?, expires_at?, raw}`, `{type: API_KEY, apiKey}` or
    `{type: BASIC, username, password}`."""
    model_config = ConfigDict(extra="allow")
    type: Literal["OAUTH2", "API_KEY", "BASIC"]


class ConnectionFull(BaseModel):
    """`GET /connections/{id}`: the connection unwrapped, with credentials."""
    id: int
    connection_id: str
    provider_config_key: str
    provider: str
    created_at: datetime
    updated_at: datetime
    last_fetched_at: datetime
    connection_config: dict[str, Any]
    webhook_url_override: str | None
    metadata: dict[str, Any] | None
    errors: list[ConnectionErrorOut]
    end_user: dict[str, Any] | None
    tags: dict[str, str]
    credentials: CredentialsOut


class RecordMetadata(BaseModel):
    first_seen_at: datetime
    last_modified_at: datetime
    last_action: Literal["ADDED", "UPDATED", "DELETED"]
    deleted_at: datetime | None
    pruned_at: datetime | None
    cursor: str


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | int
    nango_metadata: RecordMetadata = Field(alias="_nango_metadata")


class RecordsPage(BaseModel):
    records: list[Record]
    next_cursor: str | None


class ModelCounts(BaseModel):
    added: int
    updated: int
    deleted: int = 0


class SyncStatus(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    connection_id: str | None = None
    name: str
    variant: str | None = None
    type: Literal["INCREMENTAL", "INITIAL"]
    status: Literal["RUNNING", "SUCCESS", "ERROR", "PAUSED", "STOPPED"]
    paused: bool | None = None
    frequency: str | None
    finishedAt: datetime | None
    nextScheduledSyncAt: datetime | None
    latestResult: dict[str, ModelCounts]
    latestExecutionStatus: str | None = None
    recordCount: dict[str, int]
    checkpoint: dict[str, Any] | None


class TriggerOutcome(BaseModel):
    """What became of one trigger request for one connection and sync (the schedule's BUFFER_ONE policy)."""
    connection_id: str
    sync: str
    variant: str
    outcome: Literal["started", "queued", "coalesced", "requested", "no_schedule"] = Field(
        description="started: a run started now; queued: it runs after the running run; coalesced: it joined the "
                    "run already queued; requested: taken, outcome not visible yet; no_schedule: nothing to run")
    detail: str


class TriggerResult(BaseModel):
    success: bool
    triggered: list[TriggerOutcome]


class SyncStatusList(BaseModel):
    syncs: list[SyncStatus]


class FrequencyOut(BaseModel):
    frequency: str | None


class AsyncActionStarted(BaseModel):
    id: str
    statusUrl: str


class ActionOutput(RootModel[Any]):
    """The action's output as the script returned it, unwrapped."""


class MetadataEcho(BaseModel):
    """The request body, echoed (Nango's MetadataChangeResponse)."""
    metadata: dict[str, Any]
    connection_id: str | list[str]
    provider_config_key: str


class EnvironmentVariableOut(BaseModel):
    name: str
    value: str


class EnvironmentVariableListOut(RootModel[list[EnvironmentVariableOut]]):
    pass


class EnvironmentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    webhook_url: str | None
    webhook_url_secondary: str | None = None
    has_webhook_secret: bool
    notify_on_empty: bool
    on_auth_creation: bool = True
    on_auth_refresh_error: bool = True
    secret_key_rotated_at: datetime | None = None
    previous_key_expires_at: datetime | None = None


class IntegrationPlan(BaseModel):
    integration: str
    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: list[str]


class DeployResult(BaseModel):
    applied: bool
    needs_confirmation: bool
    integrations: list[IntegrationPlan]
    providers: list[str] = Field(default_factory=list, description="custom providers created or replaced")


class DeployForm(BaseModel):
    """multipart/form-data: one `bundle` part (zip from `nango compile`) per integration, and an
    optional `options` part (JSON: `{"allow_removal": bool}`)."""
    bundle: bytes = Field(json_schema_extra={"format": "binary"})
    options: str | None = None
    providers: str | None = Field(None, description="the integrations folder's providers.yaml (custom providers)")


class WebhookAck(BaseModel):
    success: bool
    id: str


class Health(BaseModel):
    status: str
    checks: dict[str, str] | None = None


class NotificationAttempt(BaseModel):
    attempt: int
    url: str
    status: int | None
    error: str | None
    attempted_at: datetime


class JobOut(BaseModel):
    id: int
    public_id: str | None
    kind: Literal["sync", "action", "webhook", "event"]
    name: str
    variant: str
    status: Literal["running", "success", "failed", "cancelled"]
    full_resync: bool
    connection_id: str
    provider_config_key: str
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    attempts: int


class JobRetry(BaseModel):
    attempt: int
    cause: str | None
    resumes: str | None
    at: datetime


class JobDetail(JobOut):
    counts: dict[str, ModelCounts]
    notifications: list[NotificationAttempt]
    retries: list[JobRetry]


class JobList(BaseModel):
    jobs: list[JobOut]


class LogEntry(BaseModel):
    level: str
    message: str
    fields: dict[str, Any] | None
    created_at: datetime


class JobLogs(BaseModel):
    logs: list[LogEntry]


class OAuthResult(BaseModel):
    success: bool
    connection_id: str
    provider_config_key: str
    created: bool
