"""Custom providers of an environment, and which provider a name means there: its custom provider
first, else the built-in one."""

from __future__ import annotations

from typing import Any

from orchestrator.errors import NotFoundError
from orchestrator.providers.catalog import Provider, builtin_providers
from orchestrator.store import custom_providers as store


async def get(conn: Any, environment_id: int, name: str) -> Provider | None:
    definition = await store.get(conn, environment_id, name)
    return Provider.model_validate(definition) if definition is not None else None


async def list_all(conn: Any, environment_id: int) -> list[Provider]:
    return [Provider.model_validate(d) for d in await store.list_all(conn, environment_id)]


async def upsert(conn: Any, environment_id: int, provider: Provider) -> bool:
    """Create or replace; True when it was created."""
    return await store.upsert(conn, environment_id, provider.name, provider.model_dump(mode="json"))


async def delete(conn: Any, environment_id: int, name: str) -> bool:
    return await store.delete(conn, environment_id, name)


async def find_provider(conn: Any, environment_id: int, name: str) -> Provider | None:
    """The environment's custom provider of that name, else the built-in one, else None."""
    custom = await get(conn, environment_id, name)
    return custom if custom is not None else builtin_providers().get(name)


async def resolve_provider(conn: Any, environment_id: int, name: str) -> Provider:
    provider = await find_provider(conn, environment_id, name)
    if provider is None:
        raise NotFoundError(f"unknown provider '{name}'", provider=name)
    return provider
