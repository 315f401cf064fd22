"""Code-first definitions: a script declares its sync, action or event script in Python, beside nango.yaml.

    @sync(frequency="every hour", models=[GithubIssue], endpoints=["GET /github/issues"])
    async def fetch_data(nango: NangoSync) -> None: ...

The CLI reads these definitions statically (`orchestrator.config.code_first`, with `ast`): nothing of a
script runs to learn what it declares, and a mistake is reported at its file and line. So the arguments
must be written out in the call (literals, model classes, `Endpoint(...)`), not computed. Inside the
sandboxed child the decorators do nothing and cost nothing: they return the function unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# Field types of code-first models with no plain Python spelling.
# `x: Nullable[str] = None` is nango.yaml's `x?: string | null`; `x: str | None = None` is `x?: string`.
Nullable: TypeAlias = Annotated[T | None, "nango:nullable"]
# nango.yaml's `date`: an ISO 8601 string on the wire, kept a string in records.
Date: TypeAlias = Annotated[str, "nango:date"]

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
SyncType = Literal["incremental", "full"]
Event = Literal["post-connection-creation", "pre-connection-deletion", "validate-connection"]


@dataclass(frozen=True)
class Endpoint:
    """An endpoint a sync's records or an action are served on; "GET /path" is the short form."""

    method: Method
    path: str
    group: str | None = None


def _inert(fn: F) -> F:
    return fn


def sync(
    *,
    frequency: str,
    models: Sequence[type[Any]],
    endpoints: Sequence[str | Endpoint] = (),
    name: str | None = None,
    sync_type: SyncType = "full",
    track_deletes: bool = False,
    auto_start: bool = True,
    input: object = None,
    scopes: Sequence[str] = (),
    version: str | None = None,
    description: str | None = None,
    webhook_subscriptions: Sequence[str] = (),
) -> Callable[[F], F]:
    """Declare the sync whose `fetch_data` this decorates (nango.yaml's `syncs:` entry).

    `models` are its output models (one endpoint each); `input` the type of its metadata; `name`
    defaults to the module's name (give it when the name has a '-')."""
    return _inert


def action(
    *,
    input: object = None,
    output: object = None,
    endpoint: str | Endpoint | Sequence[str | Endpoint] | None = None,
    name: str | None = None,
    scopes: Sequence[str] = (),
    version: str | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Declare the action whose `run_action` this decorates; `input`/`output` are types
    (a model class, `list[Model]`, `str`, `Model | None`, ...)."""
    return _inert


def on_event(*events: Event, name: str | None = None) -> Callable[[F], F]:
    """Declare the event script whose `on_event` this decorates and the events that run it."""
    return _inert
