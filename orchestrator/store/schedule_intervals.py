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


async def record(conn: asyncpg.Connection | asyncpg.Pool, schedule_id: str, interval_s: int, source: str) -> None:
    await conn.execute(
        "INSERT INTO schedule_intervals (schedule_id, interval_s, source) VALUES ($1, $2, $3)"
        " ON CONFLICT (schedule_id) DO UPDATE SET interval_s = EXCLUDED.interval_s, source = EXCLUDED.source,"
        " updated_at = now()", schedule_id, interval_s, source)


async def for_ids(conn: asyncpg.Connection | asyncpg.Pool, schedule_ids: Collection[str]) -> dict[str, Written]:
    """The rows of these schedules (one query); a schedule without a row is absent."""
    rows = await conn.fetch("SELECT schedule_id, interval_s, source FROM schedule_intervals"
                            " WHERE schedule_id = ANY($1::text[])", list(schedule_ids))
    return {r["schedule_id"]: Written(r["interval_s"], r["source"]) for r in rows}


async def delete(conn: asyncpg.Connection | asyncpg.Pool, schedule_ids: Collection[str]) -> None:
    await conn.execute("DELETE FROM schedule_intervals WHERE schedule_id = ANY($1::text[])", list(schedule_ids))


async def delete_unlisted(conn: asyncpg.Connection | asyncpg.Pool, prefix: str, listed: Collection[str]) -> int:
    """Drop the rows under `prefix` whose schedule a full listing did not show (deleted by other paths)."""
    status = await conn.execute(
        "DELETE FROM schedule_intervals WHERE starts_with(schedule_id, $1) AND NOT schedule_id = ANY($2::text[])",
        prefix, list(listed))
    return int(status.split()[-1])
