"""Environments' lifecycle, shared by the admin API and `nango admin env`: create (with a new
secret key), list, delete (with every schedule), rotate the secret key with a grace period."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client

from orchestrator.crypto import new_secret_key
from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.store import environments as repo
from orchestrator.store.types import Environment
from orchestrator.temporal import names, schedules

log = structlog.get_logger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_GRACE = timedelta(days=30)


class EnvironmentExistsError(InvalidInputError):
    code = "environment_exists"


class EnvironmentNotEmptyError(InvalidInputError):
    code = "environment_not_empty"


@dataclass
class RotatedKey:
    environment: str
    secret_key: str
    previous_key_expires_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "secret_key": self.secret_key,
                "previous_key_expires_at": self.previous_key_expires_at.isoformat()
                if self.previous_key_expires_at else None}


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InvalidInputError(f"environment name must be 1-64 letters, digits, '-' or '_' (starting with a letter "
                                f"or digit), got {name!r}")
    return name


def check_grace(seconds: float) -> timedelta:
    grace = timedelta(seconds=seconds)
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise InvalidInputError(f"grace period must be from 0 to {int(MAX_GRACE.total_seconds())} seconds "
                                f"(30 days), got {seconds:g}")
    return grace


async def get(conn: asyncpg.Connection, name: str) -> Environment:
    env = await repo.by_name(conn, name)
    if env is None:
        raise NotFoundError(f"no environment '{name}'")
    return env


async def create(pool: asyncpg.Pool, name: str) -> tuple[Environment, str]:
    """A new environment and its secret key (shown once; only its hash is stored)."""
    check_name(name)
    key = new_secret_key()
    async with pool.acquire() as conn:
        try:
            env = await repo.create(conn, name, key)
        except asyncpg.UniqueViolationError:
            raise EnvironmentExistsError(f"environment '{name}' already exists") from None
    log.info("environment_created", environment=name)
    return env, key


async def list_all(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await repo.list_all(conn)
    for row in rows:
        for k in ("created_at", "secret_key_rotated_at", "previous_key_expires_at"):
            row[k] = row[k].isoformat() if row[k] else None
    return rows


async def delete(pool: asyncpg.Pool, client: Client, name: str, *, force: bool = False) -> dict[str, Any]:
    """Delete the environment with its integrations, connections, records and schedules. An environment
    with integrations or connections needs `force`."""
    async with pool.acquire() as conn:
        env = await get(conn, name)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM integrations WHERE environment_id = $1) AS integrations,"
            " (SELECT count(*) FROM connections WHERE environment_id = $1) AS connections", env.id)
        if (counts["integrations"] or counts["connections"]) and not force:
            raise EnvironmentNotEmptyError(
                f"environment '{name}' has {counts['integrations']} integration(s) and {counts['connections']} "
                "connection(s); deleting it deletes them, their records and schedules: pass force to confirm")
        # Schedule ids from the database (the Temporal listing may lag behind a creation) and the listing.
        known = [names.sync_schedule_id(env.name, r["unique_key"], r["connection_id"], r["name"], r["variant"])
                 for r in await conn.fetch(
                     "SELECT i.unique_key, c.connection_id, s.name, 'base' AS variant FROM connections c"
                     " JOIN integrations i ON i.id = c.integration_id"
                     " JOIN deployed_scripts s ON s.integration_id = i.id AND s.kind = 'sync'"
                     " WHERE c.environment_id = $1"
                     " UNION SELECT i.unique_key, c.connection_id, v.sync_name, v.variant FROM sync_variants v"
                     " JOIN connections c ON c.id = v.connection_pk JOIN integrations i ON i.id = c.integration_id"
                     " WHERE c.environment_id = $1", env.id)]
    listed = await schedules.list_ids(client, names.schedule_prefix(env.name))
    deleted = [sid for sid in dict.fromkeys([*known, *listed]) if await schedules.delete(client, sid)]
    async with pool.acquire() as conn:
        await repo.delete(conn, env.id)
    log.info("environment_deleted", environment=name, schedules_deleted=len(deleted))
    return {"environment": name, "deleted": True, "integrations": counts["integrations"],
            "connections": counts["connections"], "schedules_deleted": deleted}


async def rotate_key(pool: asyncpg.Pool, name: str, grace: timedelta) -> RotatedKey:
    """A new secret key that works at once; the current one keeps working for `grace`."""
    key = new_secret_key()
    async with pool.acquire() as conn:
        env = await get(conn, name)
        expires = await repo.rotate_key(conn, env.id, key, grace)
    log.info("secret_key_rotated", environment=name, grace_s=int(grace.total_seconds()))
    return RotatedKey(name, key, expires)
