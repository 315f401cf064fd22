"""Environments' lifecycle, shared by the admin API and `nango admin env`: create (with a new
secret key), list, delete (with every schedule), rotate the secret key with a grace period."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.crypto import new_secret_key
from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.platform import Platform
from orchestrator.store import environments as repo
from orchestrator.store import schedule_intervals
from orchestrator.store.types import Environment
from orchestrator.temporal import names, schedules
from orchestrator.timestamps import iso

log = structlog.get_logger(__name__)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_GRACE = timedelta(days=30)
VARIABLE_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"  # also the dashboard form's `pattern`
MAX_VARIABLE_NAME = 255
MAX_VARIABLE_VALUE = 64 * 1024
MAX_VARIABLES = 500


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
                "previous_key_expires_at": iso(self.previous_key_expires_at)}


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InvalidInputError(f"environment name must be 1-64 letters, digits, '-' or '_' (starting with a letter "
                                f"or digit), got {name!r}")
    return name


class EnvironmentVariable(BaseModel):
    """One environment variable as `POST /environment-variables` and the dashboard accept it: its rules live here."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_VARIABLE_NAME, pattern=f"^{VARIABLE_NAME}$")
    value: str = Field(max_length=MAX_VARIABLE_VALUE)


def check_variable(name: str, value: str) -> EnvironmentVariable:
    """One variable checked against the rules the API applies; the first broken rule is the message."""
    try:
        return EnvironmentVariable(name=name, value=value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc") or ())
        raise InvalidInputError(f"Invalid {where or 'variable'}: {first.get('msg')}") from None


def check_grace(seconds: float) -> timedelta:
    """Checked as a number first: timedelta(seconds=1e300) overflows (it was a 500)."""
    if not 0 <= seconds <= MAX_GRACE.total_seconds():
        raise InvalidInputError(f"grace period must be from 0 to {int(MAX_GRACE.total_seconds())} seconds "
                                f"(30 days), got {seconds:g}")
    return timedelta(seconds=seconds)


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
            row[k] = iso(row[k])
    return rows


async def delete(platform: Platform, name: str, *, force: bool = False) -> dict[str, Any]:
    """Delete the environment with its integrations, connections, records and schedules. An environment
    with integrations or connections needs `force`."""
    pool, client = platform.pool, platform.temporal
    async with pool.acquire() as conn:
        env = await get(conn, name)
        counts = await repo.counts(conn, env.id)
        if (counts["integrations"] or counts["connections"]) and not force:
            raise EnvironmentNotEmptyError(
                f"environment '{name}' has {counts['integrations']} integration(s) and {counts['connections']} "
                "connection(s); deleting it deletes them, their records and schedules: pass force to confirm")
        # Schedule ids from the database (the Temporal listing may lag behind a creation) and the listing.
        known = [names.sync_schedule_id(env.name, r["unique_key"], r["connection_id"], r["name"], r["variant"])
                 for r in await repo.sync_schedule_keys(conn, env.id)]
    listed = await schedules.list_ids(client, names.schedule_prefix(env.name))
    deleted = [sid for sid in dict.fromkeys([*known, *listed]) if await schedules.delete(client, sid)]
    async with pool.acquire() as conn:
        await repo.delete(conn, env.id)
        # what we wrote into its schedules: every row under the environment's prefix, listed or not
        await schedule_intervals.delete_prefix(conn, names.schedule_prefix(env.name))
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
