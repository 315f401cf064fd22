"""Jobs (one per script run of any kind, a run attempt chain for syncs), their counts, logs and the per-sync state.

Every read of a job goes through this module and returns `Job`, so the API, the dashboard and the worker
see the same fields (the error's type is a column of its own, never parsed out of the message).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from orchestrator.store import text
from orchestrator.store.types import Job

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# a deleted connection's jobs stay, with its id and integration key copied onto them (migration 0025)
_CID = "coalesce(c.connection_id, j.connection_id)"
_KEY = "coalesce(i.unique_key, j.integration_key)"
_SELECT = (
    "SELECT j.id, j.environment_id, j.connection_pk, j.script_name, j.variant, j.kind, j.status, j.full_resync,"
    " j.started_at, j.ended_at, j.error_type, j.error, j.error_details, j.error_payload, j.public_id, j.input,"
    f" j.output, j.attempts, j.workflow_id, j.run_id, {_CID} AS connection_id, {_KEY} AS integration_key"
    " FROM jobs j LEFT JOIN connections c ON c.id = j.connection_pk"
    " LEFT JOIN integrations i ON i.id = c.integration_id"
)


async def open_job(
    conn: asyncpg.Connection, *, environment_id: int, connection_pk: int, script_name: str, kind: str,
    variant: str = "base", full_resync: bool = False, workflow_id: str | None = None, run_id: str | None = None,
    public_id: str | None = None, input: Any = None,
) -> int:
    """Open a running job for one script run of any kind.

    A sync has at most one running job per (connection, sync, variant): a retried activity of the same
    workflow run gets its job back, and a running job left by another, dead workflow run is closed as
    failed first. Action, webhook and event jobs are opened by whoever starts their workflow, one per call. The
    input is stored with NUL and lone surrogates replaced (`text.clean_json`): jsonb refuses them, and a
    provider's webhook or an action input holding `\u0000` must still run, not fail on every attempt.
    """
    input, _ = text.clean_json(input)
    if kind != "sync":
        return await conn.fetchval(
            "INSERT INTO jobs (environment_id, connection_pk, script_name, variant, kind, status, public_id, input)"
            " VALUES ($1, $2, $3, $4, $5, 'running', $6, $7) RETURNING id",
            environment_id, connection_pk, script_name, variant, kind, public_id, input)
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, workflow_id, run_id FROM jobs WHERE connection_pk = $1 AND script_name = $2"
            " AND variant = $3 AND kind = 'sync' AND status = 'running' FOR UPDATE",
            connection_pk, script_name, variant)
        if row and row["workflow_id"] == workflow_id and row["run_id"] == run_id:
            return row["id"]
        if row:
            await conn.execute(
                "UPDATE jobs SET status = 'failed', ended_at = now(),"
                " error = 'superseded: its workflow run ended without closing it' WHERE id = $1", row["id"])
        return await conn.fetchval(
            "INSERT INTO jobs (environment_id, connection_pk, script_name, variant, kind, status, full_resync,"
            " workflow_id, run_id) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING id",
            environment_id, connection_pk, script_name, variant, kind, full_resync, workflow_id, run_id)


NOT_STARTED = "not_started"  # a job whose workflow could not be started: nothing ran


async def close_unstarted(conn: asyncpg.Connection | asyncpg.Pool, job_ids: list[int], why: str) -> None:
    """Close jobs opened for a workflow that could not be started (Temporal refused or was unreachable), so none
    stays running for ever: retention keeps running jobs, and deleting the connection would wait for them."""
    await conn.execute(
        "UPDATE jobs SET status = 'failed', ended_at = now(), error_type = $2, error = $3"
        " WHERE id = ANY($1::bigint[]) AND status = 'running'", job_ids, NOT_STARTED, text.clean_noted(why))


async def close_job(conn: asyncpg.Connection, job_id: int, status: str, *, output: Any = None,
                    error_type: str | None = None, error: str | None = None, error_details: str | None = None,
                    error_payload: Any = None) -> None:
    """Close a running job (a closed one stays as it is: retries never rewrite an outcome).

    Error details written earlier in the run are kept when none are given here. Error texts come from
    scripts: NUL and lone surrogates are replaced (and the error says so) so the close cannot fail on them."""
    error_payload, _ = text.clean_json(error_payload)
    await conn.execute(
        "UPDATE jobs SET status = $2, ended_at = now(), output = $3, error_type = $4, error = $5,"
        " error_details = coalesce($6, error_details), error_payload = $7 WHERE id = $1 AND status = 'running'",
        job_id, status, output, text.clean(error_type) if error_type else None, text.clean_noted(error),
        text.clean_noted(error_details), error_payload)
    await _forget_run(conn, job_id, keep_covered=status != "success")


async def _forget_run(conn: asyncpg.Connection, job_id: int, *, keep_covered: bool) -> None:
    """A closed job needs neither what its run saw (deletion detection) nor what records were before it; an
    unsuccessful one keeps what its checkpoint covers, for the next job that resumes from that checkpoint
    (store/records.begin_attempt adopts or drops it)."""
    await conn.execute("DELETE FROM job_seen_records WHERE job_id = $1 AND NOT (covered AND $2)", job_id,
                       keep_covered)
    await conn.execute("DELETE FROM job_prior_records WHERE job_id = $1", job_id)


async def force_fail(conn: asyncpg.Connection, job_id: int, error: str, *, error_type: str = "DatabaseError") -> None:
    """Close a running job as failed with nothing but a reason: the last resort when closing it with its
    outcome (output, counts, details) was refused by the database for a reason no retry can fix."""
    await conn.execute(
        "UPDATE jobs SET status = 'failed', ended_at = now(), error_type = $2, error = $3 WHERE id = $1"
        " AND status = 'running'", job_id, error_type, text.clean(error))
    await _forget_run(conn, job_id, keep_covered=True)


async def add_attempt(conn: asyncpg.Connection, job_id: int, *, attempt: int | None = None) -> None:
    """Count a try of the job's run (the dashboard and GET /jobs/{id} show retries): with `attempt`
    (Temporal's 1-based attempt number) the count becomes at least that, so a repeated call counts once."""
    if attempt is None:
        await conn.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = $1", job_id)
    else:
        await conn.execute("UPDATE jobs SET attempts = greatest(attempts, $2) WHERE id = $1", job_id, attempt)


async def give_back_attempt(conn: asyncpg.Connection, job_id: int, attempt: int) -> None:
    """Uncount an attempt that never started the script (its environment's share was full): the run's
    next try, a fresh activity whose attempt number starts over, must not look like a lost worker's."""
    await conn.execute("UPDATE jobs SET attempts = $2 - 1 WHERE id = $1 AND attempts = $2", job_id, attempt)


async def set_error_details(conn: asyncpg.Connection, job_id: int, details: str) -> None:
    """Keep the script's traceback before the outcome is known (closing keeps it)."""
    await conn.execute("UPDATE jobs SET error_details = $2 WHERE id = $1", job_id, text.clean_noted(details))


def _job(row: asyncpg.Record, counts: dict[int, dict[str, dict[str, int]]] | None = None) -> Job:
    return Job(**dict(row), counts=(counts or {}).get(row["id"], {}))


async def started_at(conn: asyncpg.Connection, job_id: int) -> datetime | None:
    """When the job opened (its first attempt's start, in the database's clock)."""
    return await conn.fetchval("SELECT started_at FROM jobs WHERE id = $1", job_id)


async def get(conn: asyncpg.Connection, job_id: int, *, environment_id: int | None = None,
              with_counts: bool = True) -> Job | None:
    """One job by id; with `environment_id`, only when it belongs to that environment."""
    row = await conn.fetchrow(_SELECT + " WHERE j.id = $1 AND ($2::bigint IS NULL OR j.environment_id = $2)",
                              job_id, environment_id)
    if not row:
        return None
    return _job(row, await counts_for(conn, [job_id]) if with_counts else None)


async def by_public_id(conn: asyncpg.Connection, public_id: str | uuid.UUID, environment_id: int, *,
                       kind: str | None = None, with_counts: bool = True) -> Job | None:
    """A job by the public UUID its caller was given (actions, webhooks), within one environment."""
    row = await conn.fetchrow(
        _SELECT + " WHERE j.public_id = $1 AND j.environment_id = $2 AND ($3::text IS NULL OR j.kind = $3)",
        uuid.UUID(str(public_id)), environment_id, kind)
    if not row:
        return None
    return _job(row, await counts_for(conn, [row["id"]]) if with_counts else None)


async def counts(conn: asyncpg.Connection, job_id: int) -> dict[str, dict[str, int]]:
    return (await counts_for(conn, [job_id])).get(job_id, {})


async def counts_for(conn: asyncpg.Connection, job_ids: list[int]) -> dict[int, dict[str, dict[str, int]]]:
    """Per job, per model: what it really added, updated and deleted (one query for a page of jobs)."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    if not job_ids:
        return out
    rows = await conn.fetch(
        "SELECT job_id, model, added, updated, deleted FROM job_counts WHERE job_id = any($1::bigint[])"
        " ORDER BY job_id, model", job_ids)
    for r in rows:
        out.setdefault(r["job_id"], {})[r["model"]] = {"added": r["added"], "updated": r["updated"],
                                                       "deleted": r["deleted"]}
    return out


async def latest(conn: asyncpg.Connection, connection_pk: int, script_name: str, variant: str = "base",
                 *, limit: int = 1, kind: str | None = None, before: int | None = None,
                 with_counts: bool = True) -> list[Job]:
    """The newest jobs of one script of one connection (any kind unless `kind`), newest first; `before`
    pages on by id."""
    rows = await conn.fetch(
        _SELECT + " WHERE j.connection_pk = $1 AND j.script_name = $2 AND j.variant = $3"
        " AND ($4::text IS NULL OR j.kind = $4) AND ($5::bigint IS NULL OR j.id < $5) ORDER BY j.id DESC LIMIT $6",
        connection_pk, script_name, variant, kind, before, limit)
    found = await counts_for(conn, [r["id"] for r in rows]) if with_counts else None
    return [_job(r, found) for r in rows]


async def list_for_environment(
    conn: asyncpg.Connection, environment_id: int, *, integration_key: str | None = None,
    connection_id: str | None = None, script_name: str | None = None, kind: str | None = None,
    before: int | None = None, limit: int = 50, with_counts: bool = False,
) -> list[Job]:
    """An environment's jobs, newest first, optionally narrowed; `before` pages on by id. `with_counts` reads
    the page's counts in one more query (never one per job)."""
    rows = await conn.fetch(
        _SELECT + f" WHERE j.environment_id = $1 AND ($2::text IS NULL OR {_KEY} = $2)"
        f" AND ($3::text IS NULL OR {_CID} = $3) AND ($4::text IS NULL OR j.script_name = $4)"
        " AND ($5::text IS NULL OR j.kind = $5) AND ($6::bigint IS NULL OR j.id < $6) ORDER BY j.id DESC LIMIT $7",
        environment_id, integration_key, connection_id, script_name, kind, before, limit)
    found = await counts_for(conn, [r["id"] for r in rows]) if with_counts else None
    return [_job(r, found) for r in rows]


async def for_webhook_payload(conn: asyncpg.Connection, payload_id: int) -> list[Job]:
    """The webhook jobs one stored provider webhook was routed to."""
    rows = await conn.fetch(_SELECT + " WHERE j.kind = 'webhook' AND j.input->>'_payload_id' = $1 ORDER BY j.id",
                            str(payload_id))
    return [_job(r) for r in rows]


LogEntry = tuple[str, str, dict[str, Any] | None]
LEVELS = ("debug", "info", "warn", "error")


class LogLine(tuple[str, str, dict[str, Any] | None]):
    """A log line that unpacks as every sink and reader takes one, (level, message, fields), and carries `at`:
    when the script wrote it, stored as its `created_at` (the line is stored later, when the run's buffer is
    flushed). A plain 3-tuple is stored with the time of the insert."""

    at: datetime | None

    def __new__(cls, level: str, message: str, fields: dict[str, Any] | None, at: datetime | None) -> LogLine:
        line = super().__new__(cls, (level, message, fields))
        line.at = at
        return line

    def __getnewargs__(self) -> tuple[Any, ...]:  # copy and pickle rebuild it through __new__
        return (*self, self.at)


async def add_logs(conn: asyncpg.Connection, job_id: int, entries: list[LogEntry]) -> None:
    """Store log lines whatever characters they hold: NUL and lone surrogates become U+FFFD and the entry
    gets the field `sanitized: true` (PostgreSQL would refuse the whole batch otherwise)."""
    if entries:
        await conn.executemany(
            "INSERT INTO script_logs (job_id, level, message, fields, created_at)"
            " VALUES ($1, $2, $3, $4, coalesce($5::timestamptz, now()))",
            [(job_id, *_storable(*entry), getattr(entry, "at", None)) for entry in entries])


def _storable(level: str, message: str, fields: dict[str, Any] | None) -> LogEntry:
    cleaned = text.clean(message)
    cleaned_fields, changed = text.clean_json(fields)
    if changed or cleaned is not message:
        cleaned_fields = {**(cleaned_fields or {}), "sanitized": True}
    return text.clean(level), cleaned, cleaned_fields


async def logs(conn: asyncpg.Connection, job_id: int, *, after: int = 0, levels: list[str] | None = None,
               search: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """A job's log lines in order (id, level, message, fields, created_at); the dashboard tails with `after`
    and filters by level and by a case-insensitive substring."""
    rows = await conn.fetch(
        "SELECT id, level, message, fields, created_at FROM script_logs WHERE job_id = $1 AND id > $2"
        " AND ($3::text[] IS NULL OR level = any($3)) AND ($4::text IS NULL OR strpos(lower(message), lower($4)) > 0)"
        " ORDER BY id LIMIT $5", job_id, after, levels, search, limit)
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class LogQuery:
    """What `GET /logs` and the dashboard's log search narrow an environment's log lines by (None: any)."""

    integration_key: str | None = None
    connection_id: str | None = None
    script_name: str | None = None
    levels: list[str] | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    text: str | None = None  # a case-insensitive substring of the message


def log_cursor(line: dict[str, Any]) -> str:
    """The opaque cursor of the page after `line`: its time in microseconds and id (the sort key)."""
    micros = (line["created_at"] - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}.{line['id']}".encode()).decode().rstrip("=")


def parse_log_cursor(cursor: str) -> tuple[datetime, int]:
    """The sort key a cursor from `log_cursor` holds; ValueError for anything else."""
    try:
        micros, line_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(".")
        if not 0 < int(line_id) < 2**63:
            raise ValueError("id out of range")
        return _EPOCH + timedelta(microseconds=int(micros)), int(line_id)
    except (ValueError, OverflowError) as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValueError(f"not a log cursor: {cursor[:40]!r}") from exc


# a deleted connection's jobs keep its id and integration key (migration 0025): their lines stay searchable
_JOBS_OF_LINES = ("(jobs j LEFT JOIN connections c ON c.id = j.connection_pk"
                  " LEFT JOIN integrations i ON i.id = c.integration_id)")


async def search_logs(conn: asyncpg.Connection, environment_id: int, query: LogQuery, *,
                      before: tuple[datetime, int] | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """An environment's log lines across its jobs, newest first (by the time the script wrote them, then id),
    each with its job's id, kind, script, connection and integration; `before` is the sort key to page on from.

    Only the filters given become SQL (never `$n IS NULL OR ...`), so PostgreSQL plans each shape with its
    index: the text with the trigram index of migration 0024, the rest with (created_at, id)."""
    where = ["j.environment_id = $1"]
    args: list[Any] = [environment_id]

    def add(condition: str, *values: Any) -> None:
        where.append(condition.format(*(f"${len(args) + n + 1}" for n in range(len(values)))))
        args.extend(values)

    pattern = None
    if query.text:
        pattern = "%" + query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    filters = ((_KEY + " = {}", query.integration_key), (_CID + " = {}", query.connection_id),
               ("j.script_name = {}", query.script_name), ("l.level = any({}::text[])", query.levels),
               ("l.created_at >= {}", query.since), ("l.created_at < {}", query.until), ("l.message ILIKE {}", pattern))
    for condition, value in filters:
        if value:  # None (or an empty list): not a filter
            add(condition, value)
    # No line is older than the first of the jobs the filters keep (give or take the worker's clock, which stamps
    # lines, against the database's, which stamps jobs: 10 minutes of slack). Without this bound, the walk back
    # through (created_at, id) for an environment, connection or script with no recent line, or none at all,
    # reads every line of the table before it ends.
    jobs_where = " AND ".join(w for w in where if not w.startswith("l."))
    where.append(f"l.created_at >= (SELECT min(j.started_at) - interval '10 minutes' FROM {_JOBS_OF_LINES}"
                 f" WHERE {jobs_where})")
    if before is not None:
        add("(l.created_at, l.id) < ({}, {})", *before)
    args.append(limit)
    rows = await conn.fetch(
        "SELECT l.id, l.job_id, l.level, l.message, l.fields, l.created_at, j.kind, j.script_name,"
        f" {_CID} AS connection_id, {_KEY} AS integration_key FROM script_logs l JOIN "
        f"{_JOBS_OF_LINES} ON j.id = l.job_id WHERE {' AND '.join(where)} ORDER BY l.created_at DESC, l.id DESC"
        f" LIMIT ${len(args)}", *args)
    return [dict(r) for r in rows]


async def retries(conn: asyncpg.Connection, job_id: int) -> list[dict[str, Any]]:
    """The platform's retry lines of a job (runs/attempts.py): attempt, cause, resumes, at; oldest first."""
    rows = await conn.fetch(
        "SELECT fields, created_at FROM script_logs WHERE job_id = $1 AND fields->>'platform' = 'true'"
        " AND fields ? 'attempt' ORDER BY id", job_id)
    return [{"attempt": int(r["fields"]["attempt"]), "cause": r["fields"].get("cause"),
             "resumes": r["fields"].get("resumes"), "at": r["created_at"]} for r in rows]


# ---- sync state ---------------------------------------------------------------------------------

async def get_state(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str = "base"
                    ) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT last_success_at, checkpoint, reset_requested, frequency_override FROM sync_state"
        " WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3", connection_pk, sync_name, variant)
    return dict(row) if row else {"last_success_at": None, "checkpoint": None, "reset_requested": False,
                                  "frequency_override": None}


async def _upsert_state(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                        column: str, value: Any) -> None:
    assert column in {"last_success_at", "checkpoint", "reset_requested", "frequency_override", "last_job_id",
                      "clear_cache"}
    await conn.execute(
        f"INSERT INTO sync_state (connection_pk, sync_name, variant, {column}) VALUES ($1, $2, $3, $4)"
        f" ON CONFLICT (connection_pk, sync_name, variant) DO UPDATE SET {column} = EXCLUDED.{column}",
        connection_pk, sync_name, variant, value)


async def set_checkpoint(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                         checkpoint: dict[str, Any] | None) -> None:
    await _upsert_state(conn, connection_pk, sync_name, variant, "checkpoint", checkpoint)


async def set_frequency_override(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                                 frequency: str | None) -> None:
    """A per-connection interval (None: back to the deployed `runs`)."""
    await _upsert_state(conn, connection_pk, sync_name, variant, "frequency_override", frequency)


async def frequency_overrides(conn: asyncpg.Connection, connection_pks: list[int]
                              ) -> dict[tuple[int, str, str], str]:
    """(connection_pk, sync_name, variant) -> interval, for the syncs of these connections that have one."""
    rows = await conn.fetch(
        "SELECT connection_pk, sync_name, variant, frequency_override FROM sync_state"
        " WHERE connection_pk = any($1::bigint[]) AND frequency_override IS NOT NULL", connection_pks)
    return {(r["connection_pk"], r["sync_name"], r["variant"]): r["frequency_override"] for r in rows}


async def delete_state(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str) -> None:
    await conn.execute("DELETE FROM sync_state WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3",
                       connection_pk, sync_name, variant)


async def request_reset(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str = "base", *,
                        clear_cache: bool = False) -> None:
    """Mark a full resync for the next run; `clear_cache` also has that run delete the sync's records first."""
    await _upsert_state(conn, connection_pk, sync_name, variant, "reset_requested", True)
    if clear_cache:
        await _upsert_state(conn, connection_pk, sync_name, variant, "clear_cache", True)


async def take_reset(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str
                     ) -> tuple[bool, bool]:
    """Read and clear the reset mark, in one round trip on the run's start path: (a full resync was asked, it
    asked to empty the records first). A reset also forgets the last success and the checkpoint."""
    row = await conn.fetchrow(
        "WITH old AS (SELECT clear_cache FROM sync_state WHERE connection_pk = $1 AND sync_name = $2"
        " AND variant = $3 AND reset_requested FOR UPDATE)"
        " UPDATE sync_state SET reset_requested = false, clear_cache = false, last_success_at = NULL,"
        " checkpoint = NULL FROM old WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3"
        " RETURNING old.clear_cache", connection_pk, sync_name, variant)
    return (row is not None, bool(row and row["clear_cache"]))


async def mark_success(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                       started_at: datetime, job_id: int) -> None:
    await conn.execute(
        "INSERT INTO sync_state (connection_pk, sync_name, variant, last_success_at, last_job_id, checkpoint)"
        " VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (connection_pk, sync_name, variant) DO UPDATE SET"
        " last_success_at = EXCLUDED.last_success_at, last_job_id = EXCLUDED.last_job_id, checkpoint = NULL",
        connection_pk, sync_name, variant, started_at, job_id)


# ---- a connection's deletion, retention ----------------------------------------------------------

async def running_for_connection(conn: asyncpg.Connection, connection_pk: int) -> list[asyncpg.Record]:
    """The connection's jobs still running: id, kind, workflow_id, public_id (to stop them before it goes)."""
    return await conn.fetch("SELECT id, kind, workflow_id, public_id FROM jobs WHERE connection_pk = $1"
                            " AND status = 'running'", connection_pk)


async def cancel_running(conn: asyncpg.Connection, connection_pk: int, reason: str) -> int:
    """Close the connection's running jobs as cancelled (their runs were stopped); returns how many."""
    rows = await conn.fetch(
        "UPDATE jobs SET status = 'cancelled', ended_at = now(), error = $2 WHERE connection_pk = $1"
        " AND status = 'running' RETURNING id", connection_pk, reason)
    for r in rows:
        await _forget_run(conn, r["id"], keep_covered=False)
    return len(rows)


KINDS = ("sync", "action", "webhook", "event")  # every kind of job (api/jobs.py's filter accepts the same)


async def expired_jobs(conn: asyncpg.Connection, environment_id: int, kind: str, days: int, *, after: int,
                       limit: int) -> tuple[list[int], int | None]:
    """Retention: the next `limit` jobs of one kind by id after `after` (jobs_env_kind_idx; ids grow with
    `started_at`, which never changes): the finished ones among them started more than `days` ago, and the id to
    go on from, None once a newer job was reached or none is left. Running jobs are passed over, never returned."""
    rows = await conn.fetch(
        "SELECT id, status, started_at < now() - make_interval(days => $4) AS expired FROM jobs"
        " WHERE environment_id = $1 AND kind = $2 AND id > $3 ORDER BY id LIMIT $5",
        environment_id, kind, after, days, limit)
    found: list[int] = []
    for r in rows:
        if not r["expired"]:
            return found, None
        if r["status"] != "running":
            found.append(r["id"])
    return found, rows[-1]["id"] if len(rows) == limit else None


async def delete_logs_of(conn: asyncpg.Connection, job_ids: list[int], *, limit: int) -> int:
    """Delete up to `limit` log lines of these jobs (a job's lines go in bounded batches before the job)."""
    status = await conn.execute(
        "DELETE FROM script_logs WHERE id IN (SELECT id FROM script_logs WHERE job_id = any($1::bigint[])"
        " LIMIT $2)", job_ids, limit)
    return int(status.split()[-1])


async def delete_jobs(conn: asyncpg.Connection, job_ids: list[int]) -> int:
    """Delete these finished jobs; their counts and delivery attempts go with them (ON DELETE CASCADE)."""
    status = await conn.execute("DELETE FROM jobs WHERE id = any($1::bigint[]) AND status <> 'running'", job_ids)
    return int(status.split()[-1])


async def delete_expired_webhooks(conn: asyncpg.Connection, environment_id: int, days: int, *, limit: int) -> int:
    """Retention: delete up to `limit` of the environment's stored provider webhook payloads received more than
    `days` ago, oldest first (the jobs they started are kept, until their own retention)."""
    status = await conn.execute(
        "DELETE FROM webhook_payloads WHERE id IN (SELECT id FROM webhook_payloads WHERE environment_id = $1"
        " AND received_at < now() - make_interval(days => $2) ORDER BY id LIMIT $3)", environment_id, days, limit)
    return int(status.split()[-1])
