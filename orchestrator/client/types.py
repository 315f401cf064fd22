"""What the API answers, as TypedDicts (the JSON stays plain dicts; these give editors and mypy the keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import orjson


class Integration(TypedDict, total=False):
    unique_key: str
    provider: str
    display_name: str
    logo: str
    forward_webhooks: bool
    created_at: str
    updated_at: str
    webhook_url: str | None
    credentials: dict[str, Any] | None


class ConnectionSummary(TypedDict):
    id: int
    connection_id: str
    provider_config_key: str
    provider: str
    created: str
    metadata: dict[str, Any] | None
    errors: list[dict[str, str]]
    end_user: dict[str, Any] | None
    tags: dict[str, str]


class Connection(TypedDict):
    id: int
    connection_id: str
    provider_config_key: str
    provider: str
    created_at: str
    updated_at: str
    last_fetched_at: str
    connection_config: dict[str, Any]
    webhook_url_override: str | None
    metadata: dict[str, Any] | None
    errors: list[dict[str, str]]
    end_user: dict[str, Any] | None
    tags: dict[str, str]
    credentials: dict[str, Any]


class RecordsPage(TypedDict):
    records: list[dict[str, Any]]
    next_cursor: str | None


class SyncStatus(TypedDict, total=False):
    id: str
    connection_id: str
    name: str
    variant: str
    type: Literal["INCREMENTAL", "INITIAL"]
    status: Literal["RUNNING", "SUCCESS", "ERROR", "PAUSED", "STOPPED"]
    paused: bool
    frequency: str | None
    finishedAt: str | None
    nextScheduledSyncAt: str | None
    latestResult: dict[str, dict[str, int]]
    recordCount: dict[str, int]
    checkpoint: dict[str, Any] | None


class TriggerOutcome(TypedDict):
    """What became of a trigger for one connection and sync: `outcome` is started, queued (after the running
    run), coalesced (into the run already queued), requested (not visible yet) or no_schedule; `detail` says it."""
    connection_id: str
    sync: str
    variant: str
    outcome: Literal["started", "queued", "coalesced", "requested", "no_schedule"]
    detail: str


class EnvironmentVariable(TypedDict):
    name: str
    value: str


class AsyncAction(TypedDict):
    id: str
    statusUrl: str


class ConnectSession(TypedDict):
    token: str
    expires_at: str
    connect_url: str | None


class NotificationAttempt(TypedDict):
    attempt: int
    url: str
    status: int | None
    error: str | None
    attempted_at: str


class Job(TypedDict, total=False):
    id: int
    public_id: str | None
    kind: str
    name: str
    variant: str
    status: str
    full_resync: bool
    connection_id: str
    provider_config_key: str
    started_at: str
    ended_at: str | None
    error: str | None
    attempts: int
    counts: dict[str, dict[str, int]]
    notifications: list[NotificationAttempt]
    retries: list[dict[str, Any]]  # one per retry of its run: attempt, cause, resumes, at


@dataclass
class ProxyResponse:
    """The provider's answer, passed through the proxy as is."""
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")
