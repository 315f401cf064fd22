"""What the platform last wrote into each sync schedule (table `schedule_intervals`), keyed by schedule id.

A hint that spares a describe per schedule when a deploy re-times thousands of them; the schedule action's memo
holds the same values and wins whenever the two could disagree (see `temporal/schedules.py`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Written:
    interval_s: int
    source: str  # "default" (the deployed `runs`) or "override" (per connection)


async def record(conn: asyncpg.Connection | asyncpg.Pool, schedule_id: str, interval_s: int, source: str, *,
                 held: bool | None = None) -> None:
    """What we wrote; `held` (a schedule just created, paused or not) replaces the pause mark, else it stays."""
    await conn.execute(
        "INSERT INTO schedule_intervals (schedule_id, interval_s, source, held)"
        " VALUES ($1, $2, $3, coalesce($4, false))"
        " ON CONFLICT (schedule_id) DO UPDATE SET interval_s = EXCLUDED.interval_s, source = EXCLUDED.source,"
        " held = coalesce($4, schedule_intervals.held), updated_at = now()", schedule_id, interval_s, source, held)


async def for_ids(conn: asyncpg.Connection | asyncpg.Pool, schedule_ids: Collection[str]) -> dict[str, Written]:
    """The rows of these schedules (one query); a schedule without a row is absent."""
    rows = await conn.fetch("SELECT schedule_id, interval_s, source FROM schedule_intervals"
                            " WHERE schedule_id = ANY($1::text[])", list(schedule_ids))
    return {r["schedule_id"]: Written(r["interval_s"], r["source"]) for r in rows}


async def set_held(conn: asyncpg.Connection | asyncpg.Pool, schedule_id: str, held: bool) -> None:
    """Mark (before pausing) or clear (after resuming) a pause sent by the platform; no row, nothing to mark:
    a schedule without a row is always described before it is re-timed."""
    await conn.execute("UPDATE schedule_intervals SET held = $2 WHERE schedule_id = $1", schedule_id, held)


async def is_held(conn: asyncpg.Connection | asyncpg.Pool, schedule_id: str) -> bool:
    return bool(await conn.fetchval("SELECT held FROM schedule_intervals WHERE schedule_id = $1", schedule_id))


async def copy(conn: asyncpg.Connection | asyncpg.Pool, from_id: str, to_id: str) -> None:
    """The row of a schedule re-created under another id (`schedules.move`), pause mark included."""
    await conn.execute(
        "INSERT INTO schedule_intervals (schedule_id, interval_s, source, held)"
        " SELECT $2, interval_s, source, held FROM schedule_intervals WHERE schedule_id = $1"
        " ON CONFLICT (schedule_id) DO NOTHING", from_id, to_id)


async def delete(conn: asyncpg.Connection | asyncpg.Pool, schedule_ids: Collection[str]) -> None:
    await conn.execute("DELETE FROM schedule_intervals WHERE schedule_id = ANY($1::text[])", list(schedule_ids))


async def delete_unlisted(conn: asyncpg.Connection | asyncpg.Pool, prefix: str, listed: Collection[str]) -> int:
    """Drop the rows under `prefix` whose schedule a full listing did not show (deleted by other paths)."""
    status = await conn.execute(
        "DELETE FROM schedule_intervals WHERE starts_with(schedule_id, $1) AND NOT schedule_id = ANY($2::text[])",
        prefix, list(listed))
    return int(status.split()[-1])


async def delete_prefix(conn: asyncpg.Connection | asyncpg.Pool, prefix: str) -> int:
    """Drop every row under `prefix`: the environment they belong to is being deleted."""
    return await delete_unlisted(conn, prefix, [])
