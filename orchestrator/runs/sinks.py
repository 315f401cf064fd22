"""Where a run's records, logs and checkpoint go: the database (a real run) or memory (a dry run, `nango_mock`).

`ScriptHost` is one class for every run and writes through one `RecordSink`: `DatabaseSink` wraps
store/records (and the job's logs and checkpoint) within the run's scope; `MemorySink` keeps the
same things in dicts for `nango dryrun` and `NangoMock`. Both apply the script contract
(`orchestrator.sdk.contract`: id rules, dedupe, deep merge), so a record production refuses is
refused in memory too, with the same message.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import orjson
from opentelemetry.trace import Span

from orchestrator import tracing
from orchestrator.errors import TransientError
from orchestrator.sdk import contract
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.store import script_state
from orchestrator.store.records import WriteResult

LogEntry = tuple[str, str, dict[str, Any] | None]  # (level, message, fields)
LIST_PAGE_BYTES = 32 * 1024 * 1024  # at most this much of a list_records page goes to the script at once


class RecordSink(Protocol):
    """What a ScriptHost needs to keep a run's records, logs and checkpoint."""

    async def save(self, model: str, records: Sequence[Any], *, track_seen: bool = False,
                   encoded: Sequence[bytes | None] | None = None, keep_modified: bool = False) -> WriteResult:
        """Upsert; duplicate ids keep the last record and come back in `duplicate_ids`. `encoded`: each record's
        stored JSON by position, when the caller already has it (`contract.quota_bodies`). `keep_modified`
        (Nango's ignore_if_modified_after merging strategy): records another job changed since this run
        started are left as they are, their ids in `kept_ids`."""

    async def update(self, model: str, records: Sequence[Any]) -> WriteResult:
        """Deep-merge patches into stored records; ids not stored come back in `missing_ids`."""

    async def delete(self, model: str, records: Sequence[Any]) -> WriteResult:
        """Delete by id; ids not stored are ignored."""

    async def get_by_ids(self, model: str, ids: Sequence[str]) -> dict[str, Any]:
        """Stored (not deleted) records by id."""

    async def list_records(self, model: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """A page of the run's own connection's records of a model, as GET /records shows them:
        `{"records": [...], "next_cursor": ...}`."""

    async def delete_unseen(self, model: str) -> int:
        """After a full run with deletion tracking: delete what this run did not save; how many."""

    async def mark_seen(self, model: str, ids: Sequence[str]) -> None:
        """Count these ids as seen by the run without writing them: `delete_unseen` leaves them."""

    async def add_logs(self, entries: list[LogEntry]) -> None:
        """Keep the script's log lines (already redacted), in order."""

    async def get_checkpoint(self) -> dict[str, Any] | None:
        """The sync's checkpoint, or None."""

    async def set_checkpoint(self, checkpoint: dict[str, Any] | None) -> None:
        """Save (or, with None, clear) the sync's checkpoint."""

    async def try_lock(self, key: str, holder: str, ttl_ms: int) -> bool:
        """Take a lock of the run's connection for `ttl_ms` unless another holder has it."""

    async def release_lock(self, key: str, holder: str) -> bool:
        """Release a lock this holder has; whether it did."""


def _batch(model: str, records: Sequence[Any]) -> dict[str, str | int]:
    """A record batch's span attributes: its model and size, never a record or an id."""
    return {"nango.model": model, "nango.records": len(records)}


def _counted(span: Span, result: WriteResult) -> WriteResult:
    span.set_attributes({"nango.records.added": result.added, "nango.records.updated": result.updated,
                         "nango.records.deleted": result.deleted})
    return result


class DatabaseSink:
    """A real run: records in PostgreSQL within (environment, connection, model, variant), logs on the job."""

    def __init__(self, pool: asyncpg.Pool, *, environment_id: int, connection_pk: int, variant: str = "base",
                 job_id: int | None = None, sync_name: str | None = None, attempt: int = 0,
                 kind: str | None = None) -> None:
        self.pool = pool
        # whose checkpoint this run keeps: (kind, script name); read from the job row when not given
        self._script: tuple[str, str] | None = (kind, sync_name or "") if kind else None
        self._since: datetime | None = None  # the run's start, for a merging strategy
        self.attempt = attempt  # the attempt of the job's run this is (Temporal's number): what it sees is its own
        self.environment_id = environment_id
        self.connection_pk = connection_pk
        self.variant = variant
        self.job_id = job_id
        self.sync_name = sync_name

    def scope(self, model: str) -> records_repo.Scope:
        return records_repo.Scope(self.environment_id, self.connection_pk, model, self.variant)

    async def save(self, model: str, records: Sequence[Any], *, track_seen: bool = False,
                   encoded: Sequence[bytes | None] | None = None, keep_modified: bool = False) -> WriteResult:
        with tracing.span("records.save", _batch(model, records)) as span:
            async with self.pool.acquire() as conn:
                if keep_modified:  # the merging strategy: what changed since the run started stays
                    return _counted(span, await records_repo.batch_save_unless_modified(
                        conn, self.scope(model), records, since=await self._run_start(conn), job_id=self.job_id,
                        track_seen=track_seen, attempt=self.attempt, encoded=encoded))
                return _counted(span, await records_repo.batch_save(
                    conn, self.scope(model), records, job_id=self.job_id, track_seen=track_seen,
                    attempt=self.attempt, encoded=encoded))

    async def _run_start(self, conn: asyncpg.Connection) -> datetime:
        """The job's start (its first attempt's, in the database's clock), read once."""
        if self._since is None:
            started = await jobs_repo.started_at(conn, self.job_id) if self.job_id is not None else None
            self._since = started or datetime.now(UTC)
        return self._since

    async def update(self, model: str, records: Sequence[Any]) -> WriteResult:
        with tracing.span("records.update", _batch(model, records)) as span:
            async with self.pool.acquire() as conn:
                return _counted(span, await records_repo.batch_update(conn, self.scope(model), records,
                                                                      job_id=self.job_id))

    async def delete(self, model: str, records: Sequence[Any]) -> WriteResult:
        with tracing.span("records.delete", _batch(model, records)) as span:
            async with self.pool.acquire() as conn:
                return _counted(span, await records_repo.batch_delete(conn, self.scope(model), records,
                                                                      job_id=self.job_id))

    async def get_by_ids(self, model: str, ids: Sequence[str]) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            return await records_repo.get_by_ids(conn, self.scope(model), ids)

    async def list_records(self, model: str, cursor: str | None, limit: int) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            page = await records_repo.read_page(conn, self.scope(model), cursor=cursor, limit=limit)
        records = page.records()
        if len(page.records_bytes) <= LIST_PAGE_BYTES:
            return {"records": records, "next_cursor": page.next_cursor}
        # large records: the page ends early, so that it crosses the run's channel (wire.MAX_FRAME) in one frame;
        # its next_cursor is its last record's, as GET /records' would be for a page of that length
        kept, size = [], 0
        for record in records:
            size += len(orjson.dumps(record)) + 1
            if kept and size > LIST_PAGE_BYTES:
                break
            kept.append(record)
        return {"records": kept, "next_cursor": kept[-1]["_nango_metadata"]["cursor"]}

    async def delete_unseen(self, model: str) -> int:
        if self.job_id is None:  # what was seen is kept per job
            return 0
        async with self.pool.acquire() as conn:
            return await records_repo.delete_unseen(conn, self.scope(model), self.job_id)

    async def mark_seen(self, model: str, ids: Sequence[str]) -> None:
        if self.job_id is None or not ids:
            return
        async with self.pool.acquire() as conn:
            await records_repo.mark_seen(conn, self.job_id, model, ids, self.attempt)

    async def add_logs(self, entries: list[LogEntry]) -> None:
        if self.job_id is None or not entries:  # logs belong to a job; a run without one keeps none
            return
        async with self.pool.acquire() as conn:
            await jobs_repo.add_logs(conn, self.job_id, entries)

    async def _whose(self, conn: asyncpg.Connection) -> tuple[str, str] | None:
        """(kind, script) whose checkpoint this is: the job's own; a run without a job, the sync's it names."""
        if self._script is None:
            if self.job_id is not None:
                self._script = await script_state.job_script(conn, self.job_id)
            elif self.sync_name is not None:
                self._script = ("sync", self.sync_name)
        return self._script

    async def get_checkpoint(self) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            whose = await self._whose(conn)
            if whose is None:
                return None
            if whose[0] != "sync":  # actions, webhook and event scripts: per (connection, kind, script)
                return await script_state.get_checkpoint(conn, self.connection_pk, *whose)
            return (await jobs_repo.get_state(conn, self.connection_pk, whose[1], self.variant))["checkpoint"]

    async def set_checkpoint(self, checkpoint: dict[str, Any] | None) -> None:
        async with self.pool.acquire() as conn:
            whose = await self._whose(conn)
            if whose is None:
                return
            if whose[0] != "sync":
                await script_state.set_checkpoint(conn, self.connection_pk, *whose, checkpoint)
                return
            async with conn.transaction():
                # What this attempt has seen so far is covered by the checkpoint, in the same transaction: an
                # attempt resuming from it keeps exactly those records as seen.
                if self.job_id is not None and not await records_repo.cover_seen(conn, self.job_id, self.attempt):
                    raise TransientError(f"attempt {self.attempt} of this run is stale (a newer attempt has "
                                         "started): its checkpoint is refused")
                await jobs_repo.set_checkpoint(conn, self.connection_pk, whose[1], self.variant, checkpoint)

    async def try_lock(self, key: str, holder: str, ttl_ms: int) -> bool:
        async with self.pool.acquire() as conn:
            return await script_state.try_lock(conn, self.connection_pk, key, holder, ttl_ms)

    async def release_lock(self, key: str, holder: str) -> bool:
        async with self.pool.acquire() as conn:
            return await script_state.release_lock(conn, self.connection_pk, key, holder)


class MemorySink:
    """Everything in memory: `stored` is what the database would hold, `records` what each call sent.

    `records` is `{model: {"save"|"update"|"delete": [records as the script sent them]}}` (only calls
    that were accepted): what `nango dryrun` prints and saves as records.json and `nango test` compares.
    """

    def __init__(self, records: dict[str, list[dict[str, Any]]] | None = None,
                 checkpoint: dict[str, Any] | None = None) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        for model, rows in (records or {}).items():
            with records_repo.record_errors():
                items, _ = contract.dedupe(rows, model)
            self.stored[model] = {rid: copy.deepcopy(record) for rid, record, _ in items}
        self.records: dict[str, dict[str, list[Any]]] = {}
        self.logs: list[LogEntry] = []
        self.checkpoint = checkpoint
        self.modified: dict[str, set[str]] = {}  # ids another job changed during this run (`modify`)
        self.locks: dict[str, tuple[str, float]] = {}  # key -> (holder, expiry on the monotonic clock)

    def modify(self, model: str, records: Sequence[Any]) -> None:
        """Records changed by someone else while this run goes on (a webhook script, say): a merging strategy
        of ignore_if_modified_after leaves them as they are."""
        with records_repo.record_errors():
            items, _ = contract.dedupe(records, model)
        stored = self.stored.setdefault(model, {})
        for rid, record, _ in items:
            stored[rid] = copy.deepcopy(record)
            self.modified.setdefault(model, set()).add(rid)

    def _sent(self, kind: str, model: str, records: Sequence[Any]) -> None:
        self.records.setdefault(model, {}).setdefault(kind, []).extend(copy.deepcopy(list(records)))

    def record_count(self) -> int:
        """How many records the script has sent so far, all calls together."""
        return sum(len(rows) for kinds in self.records.values() for rows in kinds.values())

    async def save(self, model: str, records: Sequence[Any], *, track_seen: bool = False,
                   encoded: Sequence[bytes | None] | None = None, keep_modified: bool = False) -> WriteResult:
        with records_repo.record_errors():
            items, dupes = contract.dedupe(records, model)
            kept = sorted(rid for rid, _, _ in items if rid in self.modified.get(model, ())) if keep_modified else []
            items = [item for item in items if item[0] not in kept] if kept else items
            bodies = {rid: contract.encode_record(record, rid, index, model) for rid, record, index in items}
        stored = self.stored.setdefault(model, {})
        result = WriteResult(duplicate_ids=dupes, kept_ids=kept)
        for rid, record, index in items:
            if rid not in stored:
                result.added += 1
            elif contract.encode_record(stored[rid], rid, index, model) != bodies[rid]:
                result.updated += 1
            stored[rid] = copy.deepcopy(record)
        self._sent("save", model, records)
        return result

    async def update(self, model: str, records: Sequence[Any]) -> WriteResult:
        with records_repo.record_errors():
            patches = contract.merge_patches(records, model)
        stored = self.stored.setdefault(model, {})
        result = WriteResult(missing_ids=[rid for rid in patches if rid not in stored])
        for index, (rid, patch) in enumerate(patches.items()):
            if rid in stored:
                merged = contract.deep_merge(stored[rid], copy.deepcopy(patch))
                with records_repo.record_errors():  # changed as the store sees it: the stored JSON differs
                    changed = (contract.encode_record(merged, rid, index, model)
                               != contract.encode_record(stored[rid], rid, index, model))
                result.updated += changed
                stored[rid] = merged
        self._sent("update", model, records)
        return result

    async def delete(self, model: str, records: Sequence[Any]) -> WriteResult:
        with records_repo.record_errors():
            ids = contract.unique_ids(records, model)
        stored = self.stored.setdefault(model, {})
        result = WriteResult(deleted=sum(stored.pop(rid, None) is not None for rid in ids))
        self._sent("delete", model, records)
        return result

    async def get_by_ids(self, model: str, ids: Sequence[str]) -> dict[str, Any]:
        stored = self.stored.get(model, {})
        return {i: copy.deepcopy(stored[i]) for i in ids if i in stored}

    async def list_records(self, model: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """Stored records in the order they were first stored, each with a `_nango_metadata` of the same shape as
        the store's (no times in memory); the cursor is opaque, as the store's."""
        rows = list(self.stored.get(model, {}).items())
        start = records_repo.decode_cursor(cursor) if cursor else 0
        page = rows[start:start + limit]
        out = [{**copy.deepcopy(record), "_nango_metadata": {
            "first_seen_at": None, "last_modified_at": None, "last_action": "ADDED", "deleted_at": None,
            "pruned_at": None, "cursor": records_repo.encode_cursor(start + i + 1)}}
            for i, (_, record) in enumerate(page)]
        more = start + limit < len(rows)
        return {"records": out, "next_cursor": records_repo.encode_cursor(start + limit) if more else None}

    async def delete_unseen(self, model: str) -> int:
        return 0  # memory holds only what this run saved: nothing is unseen

    async def mark_seen(self, model: str, ids: Sequence[str]) -> None:
        return None  # nothing is unseen in memory

    async def add_logs(self, entries: list[LogEntry]) -> None:
        self.logs.extend(entries)

    async def get_checkpoint(self) -> dict[str, Any] | None:
        return copy.deepcopy(self.checkpoint)

    async def set_checkpoint(self, checkpoint: dict[str, Any] | None) -> None:
        self.checkpoint = copy.deepcopy(checkpoint)

    async def try_lock(self, key: str, holder: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        held = self.locks.get(key)
        if held is not None and held[0] != holder and held[1] > now:
            return False
        self.locks[key] = (holder, now + ttl_ms / 1000)
        return True

    async def release_lock(self, key: str, holder: str) -> bool:
        held = self.locks.get(key)
        if held is None or held[0] != holder:
            return False
        del self.locks[key]
        return held[1] > time.monotonic()
