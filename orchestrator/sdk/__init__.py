"""The SDK scripts import: `from orchestrator.sdk import NangoSync, NangoAction, ActionError`.

Imported inside the sandboxed child: it holds no secret and does no I/O except the RPC channel.
"""

from orchestrator.sdk.definitions import Date, Endpoint, Nullable, action, on_event, sync
from orchestrator.sdk.errors import ActionError, HttpError, NangoError
from orchestrator.sdk.nango import NangoAction, NangoSync, ProxyResponse
from orchestrator.sdk.pagination import PaginationConfig

__all__ = ["ActionError", "Date", "Endpoint", "HttpError", "NangoAction", "NangoError", "NangoSync", "Nullable",
           "PaginationConfig", "ProxyResponse", "action", "on_event", "sync"]
