"""Readable, stable Temporal ids and the custom search attributes on every workflow."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

SYNC_WORKFLOW = "SyncWorkflow"
SYNC_QUEUE = "syncs"
ACTION_QUEUE = "actions"
WEBHOOK_QUEUE = "webhooks"
EVENT_QUEUE = "events"

SA_ENVIRONMENT = SearchAttributeKey.for_keyword("NangoEnvironment")
SA_INTEGRATION = SearchAttributeKey.for_keyword("NangoIntegration")
SA_CONNECTION = SearchAttributeKey.for_keyword("NangoConnection")
SA_SYNC = SearchAttributeKey.for_keyword("NangoSync")
SA_KIND = SearchAttributeKey.for_keyword("NangoScriptKind")
SEARCH_ATTRIBUTES = [SA_ENVIRONMENT, SA_INTEGRATION, SA_CONNECTION, SA_SYNC, SA_KIND]


def escape(part: str) -> str:
    """User ids may contain ':'; escape it (and '%') so the id still splits unambiguously."""
    return part.replace("%", "%25").replace(":", "%3A")


def unescape(part: str) -> str:
    return part.replace("%3A", ":").replace("%25", "%")


def sync_schedule_id(environment: str, integration: str, connection_id: str, sync: str,
                     variant: str = "base") -> str:
    base = ":".join(escape(p) for p in ("sync", environment, integration, connection_id, sync))
    return base if variant == "base" else f"{base}:{escape(variant)}"


def schedule_prefix(environment: str, integration: str | None = None) -> str:
    parts = ["sync", environment] + ([integration] if integration else [])
    return ":".join(escape(p) for p in parts) + ":"


def parse_schedule_id(schedule_id: str) -> dict[str, str] | None:
    parts = schedule_id.split(":")
    if len(parts) not in (5, 6) or parts[0] != "sync":
        return None
    keys = ["environment", "integration", "connection_id", "sync", "variant"]
    out = {k: unescape(v) for k, v in zip(keys, parts[1:], strict=False)}
    out.setdefault("variant", "base")
    return out


def search_attributes(environment: str, integration: str, connection_id: str, sync: str,
                      kind: str = "sync") -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(SA_ENVIRONMENT, environment),
        SearchAttributePair(SA_INTEGRATION, integration),
        SearchAttributePair(SA_CONNECTION, connection_id),
        SearchAttributePair(SA_SYNC, sync),
        SearchAttributePair(SA_KIND, kind),
    ])


def queue(prefix: str, kind: str) -> str:
    return f"{prefix}{kind}"
