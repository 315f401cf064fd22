"""Online rotation of ENCRYPTION_KEY: re-seal every sealed column under the current key.

Runs while the API and the workers serve, all configured with ENCRYPTION_KEY (new) and
ENCRYPTION_KEY_PREVIOUS (old): the Sealer opens values sealed under either and seals only under the
new one. Rows are re-sealed in short batches with a compare-and-set update (a value written
meanwhile is left alone and looked at again), so the command is idempotent and resumable: run it
again after an interruption. The stored fingerprint moves to the new key only after a pass finds
no value left under the old key; from then on a process with only the old key refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog
from cryptography.exceptions import InvalidTag

from orchestrator.crypto import Sealer
from orchestrator.errors import OrchestratorError
from orchestrator.store import key_fingerprint

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    table: str
    keys: tuple[str, ...]
    column: str

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


# Every column holding Sealer output (bytea in orchestrator/store/migrations: grep for "sealed").
SEALED_COLUMNS = (
    SealedColumn("connections", ("id",), "credentials"),
    SealedColumn("integrations", ("id",), "oauth_client_secret"),
    SealedColumn("integrations", ("id",), "webhook_secret"),
    SealedColumn("environments", ("id",), "webhook_secret"),
    SealedColumn("environment_variables", ("environment_id", "name"), "value"),
)


class KeyRotationError(OrchestratorError):
    code = "key_rotation_failed"
    terminal = True


async def _reseal_column(pool: asyncpg.Pool, sealer: Sealer, col: SealedColumn, batch_size: int) -> int:
    keys = ", ".join(col.keys)
    params = ", ".join(f"${i + 1}" for i in range(len(col.keys)))
    after: tuple[object, ...] | None = None
    resealed = 0
    while True:
        where = f"{col.column} IS NOT NULL" + (f" AND ({keys}) > ({params})" if after is not None else "")
        n = len(col.keys) + 1 if after is not None else 1
        async with pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {keys}, {col.column} AS sealed FROM {col.table} WHERE {where}"
                                    f" ORDER BY {keys} LIMIT ${n}", *(after or ()), batch_size)
            if not rows:
                return resealed
            updates = []
            for row in rows:
                pk = tuple(row[k] for k in col.keys)
                try:
                    new = sealer.reseal(row["sealed"])
                except (InvalidTag, ValueError) as exc:
                    raise KeyRotationError(
                        f"{col.name} of row {pk} opens with neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS "
                        f"({type(exc).__name__}); nothing was lost, fix or delete that row and run the command "
                        "again", column=col.name, row=[str(v) for v in pk]) from exc
                if new is not None:
                    updates.append((*pk, new, row["sealed"]))
            if updates:
                k = len(col.keys)
                match = " AND ".join(f"{name} = ${i + 1}" for i, name in enumerate(col.keys))
                async with conn.transaction():
                    await conn.executemany(
                        f"UPDATE {col.table} SET {col.column} = ${k + 1} WHERE {match} AND {col.column} = ${k + 2}",
                        updates)
                resealed += len(updates)
            after = tuple(rows[-1][name] for name in col.keys)


async def count_under_previous(pool: asyncpg.Pool, sealer: Sealer) -> dict[str, int]:
    """Values still sealed under the previous key, per column (what a rotation has left to do)."""
    left: dict[str, int] = {}
    async with pool.acquire() as conn:
        for col in SEALED_COLUMNS:
            rows = await conn.fetch(f"SELECT {col.column} AS sealed FROM {col.table} WHERE {col.column} IS NOT NULL")
            left[col.name] = sum(1 for r in rows if not sealer.is_current(r["sealed"]))
    return left


async def rotate_encryption(pool: asyncpg.Pool, sealer: Sealer, *, batch_size: int = 500,
                            max_passes: int = 5) -> dict[str, object]:
    """Re-seal every value under the current key, then move the stored fingerprint to it."""
    if sealer.previous_fingerprint is None:
        raise KeyRotationError("ENCRYPTION_KEY_PREVIOUS is not set: set ENCRYPTION_KEY to the new key and "
                               "ENCRYPTION_KEY_PREVIOUS to the old one on every API and worker process first")
    totals = {col.name: 0 for col in SEALED_COLUMNS}
    for attempt in range(1, max_passes + 1):
        for col in SEALED_COLUMNS:
            done = await _reseal_column(pool, sealer, col, batch_size)
            totals[col.name] += done
            log.info("key_rotation_column", column=col.name, resealed=done, attempt=attempt)
        left = await count_under_previous(pool, sealer)
        if not any(left.values()):
            break
        # A process still on the old key alone wrote meanwhile, or a compare-and-set lost a race.
        log.warning("key_rotation_values_left", left=left, attempt=attempt)
    else:
        raise KeyRotationError(f"values are still sealed under the previous key after {max_passes} passes: {left}. "
                               "Is every API and worker process running with the new ENCRYPTION_KEY?", left=left)
    async with pool.acquire() as conn:
        if not await key_fingerprint.replace(conn, sealer.previous_fingerprint, sealer.fingerprint):
            raise KeyRotationError("the stored key fingerprint is neither the previous key's nor the new key's")
    log.info("key_rotation_done", fingerprint=sealer.fingerprint, resealed=totals)
    return {"fingerprint": sealer.fingerprint, "previous_fingerprint": sealer.previous_fingerprint,
            "resealed": totals}
