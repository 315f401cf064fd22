"""The records store against a real PostgreSQL: exact under retries, ordered for consumers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from orchestrator.errors import RecordError
from orchestrator.sdk import contract
from orchestrator.store import records
from tests.conftest import fresh_connection

ScopeFactory = Callable[..., Awaitable[records.Scope]]


@pytest.fixture
async def new_scope(pool: asyncpg.Pool) -> ScopeFactory:
    """A fresh environment + integration + connection; returns a Scope on it."""

    async def make(model: str = "Issue", variant: str = "base") -> records.Scope:
        env_id, pk = await fresh_connection(pool, "rs")
        return records.Scope(env_id, pk, model, variant)

    return make


async def new_job(pool: asyncpg.Pool, scope: records.Scope, sync: str = "issues") -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "INSERT INTO jobs (environment_id, connection_pk, script_name, variant, kind, status)"
            " VALUES ($1, $2, $3, $4, 'action', 'running') RETURNING id",
            scope.environment_id, scope.connection_pk, sync, scope.variant)


async def rows(pool: asyncpg.Pool, scope: records.Scope) -> dict[str, dict[str, Any]]:
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT r.external_id, (left(r.body, -r.meta_len) || '}')::jsonb AS data, r.cursor, r.last_action,"
            " r.deleted_at, r.job_id FROM records r"
            " JOIN record_scopes s ON s.id = r.scope_id"
            " WHERE s.connection_pk = $1 AND s.model = $2 AND s.variant = $3",
            scope.connection_pk, scope.model, scope.variant)
    return {r["external_id"]: dict(r) for r in found}


async def job_counts(pool: asyncpg.Pool, job_id: int) -> dict[str, tuple[int, int, int]]:
    async with pool.acquire() as conn:
        found = await conn.fetch("SELECT model, added, updated, deleted FROM job_counts WHERE job_id = $1", job_id)
    return {r["model"]: (r["added"], r["updated"], r["deleted"]) for r in found}


async def read_all(pool: asyncpg.Pool, scope: records.Scope, **kw: Any) -> list[dict[str, Any]]:

    out: list[dict[str, Any]] = []
    cursor = None
    async with pool.acquire() as conn:
        while True:
            page = await records.read_page(conn, scope, cursor=cursor, **kw)
            out += page.records()
            cursor = page.next_cursor
            if not cursor:
                return out


def issue(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"id": str(i), "title": f"Issue {i}", "labels": ["a"], "meta": {"x": 1, "y": {"z": 2}}, **extra}


# ---- batch_save -----------------------------------------------------------------------------------

async def test_save_then_replay_is_a_no_op(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    job = await new_job(pool, scope)
    batch = [issue(i) for i in range(50)]
    async with pool.acquire() as conn:
        first = await records.batch_save(conn, scope, batch, job_id=job)
    assert (first.added, first.updated) == (50, 0)
    before = await rows(pool, scope)
    assert {r["last_action"] for r in before.values()} == {"ADDED"}
    assert await job_counts(pool, job) == {"Issue": (50, 0, 0)}

    # A retried activity replays the same batch: nothing moves, nothing is counted.
    async with pool.acquire() as conn:
        again = await records.batch_save(conn, scope, batch, job_id=job)
        also_reordered = await records.batch_save(conn, scope, [dict(reversed(r.items())) for r in batch],
                                                  job_id=job)
    assert (again.added, again.updated) == (0, 0)
    assert (also_reordered.added, also_reordered.updated) == (0, 0)
    assert await rows(pool, scope) == before
    assert await job_counts(pool, job) == {"Issue": (50, 0, 0)}

    # One record really changes: only its cursor moves, and it is counted once.
    async with pool.acquire() as conn:
        changed = await records.batch_save(conn, scope, [*batch[:10], issue(3, title="renamed")], job_id=job)
    assert (changed.added, changed.updated) == (0, 1)
    after = await rows(pool, scope)
    assert after["3"]["cursor"] > max(r["cursor"] for r in before.values())
    assert after["3"]["last_action"] == "UPDATED" and after["3"]["data"]["title"] == "renamed"
    assert {k: v for k, v in after.items() if k != "3"} == {k: v for k, v in before.items() if k != "3"}
    assert await job_counts(pool, job) == {"Issue": (50, 1, 0)}


async def test_ids_strings_or_integers_and_zero_is_valid(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    async with pool.acquire() as conn:
        result = await records.batch_save(conn, scope, [{"id": 0, "n": 0}, {"id": 17, "n": 1}, {"id": "x", "n": 2}])
        assert result.added == 3
        got = await records.get_by_ids(conn, scope, [0, "17", "x", "missing"])
    assert got == {"0": {"id": 0, "n": 0}, "17": {"id": 17, "n": 1}, "x": {"id": "x", "n": 2}}


async def test_awkward_characters_round_trip_exactly(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope(model="We\\ird\tModel")
    weird = {
        "id": "a\\b\tc\nd\re é 🎉 \"q\"",
        "text": "back\\slash \\u0000-not-a-nul tab\t newline\n cr\r quote\" unicode é 漢字 🎉 \u2028",
        "nested": {"deep": [1, 2.5, None, True, {"k": "\\\\"}]},
        "empty": {},
        "big": 2**63 - 1,
    }
    async with pool.acquire() as conn:
        assert (await records.batch_save(conn, scope, [weird, {"id": "plain"}])).added == 2
        got = await records.get_by_ids(conn, scope, [weird["id"], "plain"])
        again = await records.batch_save(conn, scope, [weird])
    assert got[weird["id"]] == weird
    assert again.added == again.updated == 0
    listed = await read_all(pool, scope)
    assert [{k: v for k, v in r.items() if k != "_nango_metadata"} for r in listed] == [weird, {"id": "plain"}]


async def test_duplicate_ids_in_one_batch_keep_the_last(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    async with pool.acquire() as conn:
        result = await records.batch_save(conn, scope, [issue(1, v=1), issue(2), issue(1, v=2), issue(1, v=3)])
        got = await records.get_by_ids(conn, scope, ["1", "2"])
    assert result.added == 2 and result.duplicate_ids == ["1"]
    assert got["1"]["v"] == 3


class NotJson:
    pass


@pytest.mark.parametrize(("bad", "message"), [
    ({"title": "no id"}, "record #3 of model 'Issue' has no usable 'id'"),
    ({"id": "", "title": "empty id"}, "record #3 of model 'Issue' has no usable 'id'"),
    ({"id": None}, "has no usable 'id'"),
    ({"id": True}, "has no usable 'id'"),
    ({"id": 1.5}, "has no usable 'id'"),
    ({"id": "x" * 256}, "record #3 of model 'Issue' has an id of 256 characters"),
    ({"id": "nul\x00id"}, "NUL character in its id"),
    ({"id": "bad-value", "when": NotJson()}, "record #3 (id 'bad-value') of model 'Issue' is not JSON"),
    ({"id": "bad-set", "tags": {1, 2}}, "record #3 (id 'bad-set') of model 'Issue' is not JSON"),
    ({"id": "too-big", "n": 2**70}, "record #3 (id 'too-big') of model 'Issue' is not JSON"),
    ({"id": "nul-text", "t": "a\x00b"}, "record #3 (id 'nul-text') of model 'Issue' contains a NUL character"),
    (["id", "list"], "record #3 of model 'Issue' is a list, not an object"),
    ("just a string", "record #3 of model 'Issue' is a str, not an object"),
    (None, "record #3 of model 'Issue' is a NoneType, not an object"),
])
async def test_bad_records_reject_the_whole_batch(pool: asyncpg.Pool, new_scope: ScopeFactory, bad: Any,
                                                  message: str) -> None:
    scope = await new_scope()
    batch = [issue(0), issue(1), issue(2), bad, issue(4)]
    async with pool.acquire() as conn:
        with pytest.raises(RecordError) as err:
            await records.batch_save(conn, scope, batch)
    assert message in err.value.message
    assert await rows(pool, scope) == {}  # nothing half-written
    # the same checks guard the other writes
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(0)])
        if not isinstance(bad, dict) or "id" not in bad or bad.get("id") in ("", None, True, 1.5) \
                or len(str(bad.get("id"))) > 255 or "\x00" in str(bad.get("id")):
            with pytest.raises(RecordError):
                await records.batch_delete(conn, scope, batch)
        with pytest.raises(RecordError):
            await records.batch_update(conn, scope, batch)
    assert set(await rows(pool, scope)) == {"0"}
    assert (await rows(pool, scope))["0"]["last_action"] == "ADDED"


async def test_id_of_255_characters_is_fine(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    async with pool.acquire() as conn:
        assert (await records.batch_save(conn, scope, [{"id": "é" * 255}])).added == 1


async def test_records_must_be_a_list(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    async with pool.acquire() as conn:
        with pytest.raises(RecordError, match="must be a list of objects"):
            await records.batch_save(conn, scope, {"id": "1"})  # type: ignore[arg-type]


async def stored_state(pool: asyncpg.Pool, scope: records.Scope) -> list[tuple[Any, ...]]:
    """What a consumer gets, in cursor order, without the instants and cursor values (which differ by scope);
    and every body checked against its columns (records_meta: what the migration and the trigger render)."""
    async with pool.acquire() as conn:
        scope_id = await conn.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1 AND model = $2",
                                       scope.connection_pk, scope.model)
        assert await conn.fetchval(
            "SELECT count(*) FROM records WHERE scope_id = $1 AND body <> left(body, -meta_len) || records_meta("
            "first_seen_at, last_modified_at, last_action, deleted_at, cursor)", scope_id) == 0
        found = await conn.fetch(
            "SELECT external_id, left(body, -meta_len) || '}' AS data, last_action, deleted_at IS NULL AS live,"
            " first_seen_at = last_modified_at AS fresh, job_id IS NOT NULL AS by_job FROM records WHERE scope_id = $1"
            " ORDER BY cursor",
            scope_id)
    return [tuple(r.values()) for r in found]


def spy_direct(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch that takes the direct path (`_save_direct`), as it is taken."""
    direct: list[int] = []
    save_direct = records._save_direct

    async def spy(*args: Any, **kw: Any) -> None:
        direct.append(len(args[3].items))
        await save_direct(*args, **kw)
    monkeypatch.setattr(records, "_save_direct", spy)
    return direct


async def test_a_mostly_changed_batch_is_upserted_directly_with_the_same_outcome(
        pool: asyncpg.Pool, new_scope: ScopeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose sample is mostly changed skips the lookup (`_save_direct`); rows, counts, cursor order, the
    bodies and what a retried job recounts are the same as through the lookup path."""
    direct = spy_direct(monkeypatch)

    first = [issue(i, v=0) for i in range(200)]
    # 150 changed, 20 unchanged, 20 new, 10 revived (deleted in between), in a shuffled order
    second = ([issue(i, v=1) for i in range(150)] + first[150:170] + [issue(i, v=1) for i in range(200, 220)]
              + [issue(i, v=0) for i in range(190, 200)])
    random.Random(3).shuffle(second)
    outcome = []
    for lookup_only in (False, True):
        monkeypatch.setattr(records, "SAMPLE", 1000 if lookup_only else 32)  # a batch this small: lookup path
        scope = await new_scope()
        jobs = [await new_job(pool, scope, sync=f"s{i}") for i in range(2)]
        async with pool.acquire() as conn:
            await records.batch_save(conn, scope, first, job_id=jobs[0])
            await records.batch_delete(conn, scope, first[190:], job_id=jobs[0])
            result = await records.batch_save(conn, scope, second, job_id=jobs[1])
            replay = await records.batch_save(conn, scope, second, job_id=jobs[1])
            await records.recount(conn, jobs[1], scope.connection_pk, scope.variant)
        outcome.append(((result.added, result.updated), (replay.added, replay.updated),
                        await job_counts(pool, jobs[1]), await stored_state(pool, scope)))
    assert direct == [len(second)]  # the batch, once: its replay is unchanged, and SAMPLE=1000 never probes
    assert outcome[0] == outcome[1]
    counts, replayed, recounted, state = outcome[0]
    assert counts == (30, 150) and replayed == (0, 0) and recounted == {"Issue": (30, 150, 0)}
    # the batch's writes come after everything before it, in batch order
    written = [rid for rid, _, action, *_ in state if action != "DELETED"][-180:]
    assert written == [r["id"] for r in second if r not in first[150:170]]


async def test_a_bad_record_in_a_directly_upserted_batch_writes_nothing(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(i) for i in range(3000)])
        before = await stored_state(pool, scope)
        batch = [issue(i, v=1) for i in range(3000)]
        batch[2500]["when"] = {1, 2}  # not JSON, in the third chunk: the first two were sent already
        with pytest.raises(RecordError, match="record #2500"):
            await records.batch_save(conn, scope, batch)
        with pytest.raises(RecordError, match="record #0"):  # the first record is in the sample that is probed
            await records.batch_save(conn, scope, [batch[2500], *batch[:2500]])
        assert await stored_state(pool, scope) == before
        assert (await records.batch_save(conn, scope, batch[:2500])).updated == 2500


async def test_directly_upserted_batches_in_one_transaction_keep_only_what_succeeded(
        pool: asyncpg.Pool, new_scope: ScopeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct path stages its chunks in a session table: a batch that fails after some chunks were written
    leaves nothing staged for the next one, inside the caller's transaction as across transactions."""
    direct = spy_direct(monkeypatch)
    scope = await new_scope()
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(i) for i in range(2500)])
        bad = [issue(i, v=1) for i in range(2500)]
        bad[2200]["when"] = {1, 2}  # the third chunk: two were staged and written before it fails
        async with conn.transaction():
            first = await records.batch_save(conn, scope, [issue(i, v=2) for i in range(1000, 2500)])
            with pytest.raises(RecordError, match="record #2200"):
                await records.batch_save(conn, scope, bad)
            second = await records.batch_save(conn, scope, [issue(i, v=3) for i in range(2000)])
        third = await records.batch_save(conn, scope, [issue(i, v=4) for i in range(1500, 2600)])
    assert direct == [1500, 2500, 2000, 1100]
    assert (first.updated, second.updated, third.updated, third.added) == (1500, 2000, 1000, 100)
    stored = await rows(pool, scope)
    assert len(stored) == 2600
    assert {r["data"]["v"] for i, r in stored.items() if int(i) < 1500} == {3}
    assert {r["data"]["v"] for i, r in stored.items() if 1500 <= int(i) < 2600} == {4}
    assert [r["id"] for r in await read_all(pool, scope, limit=1000)][-1100:] == [str(i) for i in range(1500, 2600)]


async def test_a_big_first_batch_into_an_empty_scope_then_a_mostly_new_one(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    """An empty scope takes the batch without a lookup; the next batch, mostly new with a few stored ids,
    takes the lookup path and still tells them apart."""
    scope = await new_scope()
    async with pool.acquire() as conn:
        first = await records.batch_save(conn, scope, [issue(i) for i in range(100)])
        second = await records.batch_save(conn, scope, [issue(i) for i in range(90, 300)])
    assert (first.added, first.updated, second.added, second.updated) == (100, 0, 200, 0)
    state = await stored_state(pool, scope)
    assert [r[0] for r in state] == [str(i) for i in range(300)]


async def test_a_batch_whose_sample_is_all_new_is_copied_and_a_stored_id_outside_the_sample_still_counts(
        pool: asyncpg.Pool, new_scope: ScopeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch none of whose sampled ids is stored is copied without a lookup (`_save_fresh`); when an id outside
    the sample is stored after all (live or deleted), the COPY is undone and the lookup path gives the outcome it
    always gave: rows, bodies, counts, cursor order and a retried job's recount."""
    fresh: list[bool] = []
    save_fresh = records._save_fresh

    async def spy(*args: Any, **kw: Any) -> bool:
        fresh.append(await save_fresh(*args, **kw))
        return fresh[-1]
    monkeypatch.setattr(records, "_save_fresh", spy)

    first = [issue(i) for i in range(100)]
    # 300 records: new ones, then two stored ids at positions the sample of 32 skips (1 and 2): one live and
    # unchanged, one deleted (it comes back), and one stored id that changed at position 3
    stored_later = [issue(5), issue(6), issue(7, v=1)]
    second = [issue(1000), *stored_later, *[issue(i) for i in range(1001, 1297)]]
    third = [issue(i) for i in range(2000, 2300)]  # all new: copied straight
    outcome = []
    for lookup_only in (False, True):
        monkeypatch.setattr(records, "SAMPLE", 1000 if lookup_only else 32)
        scope = await new_scope()
        jobs = [await new_job(pool, scope, sync=f"s{i}") for i in range(2)]
        async with pool.acquire() as conn:
            await records.batch_save(conn, scope, first, job_id=jobs[0])
            await records.batch_delete(conn, scope, [issue(6)], job_id=jobs[0])
            results = [await records.batch_save(conn, scope, batch, job_id=jobs[1]) for batch in (second, third)]
            replay = await records.batch_save(conn, scope, second, job_id=jobs[1])
            await records.recount(conn, jobs[1], scope.connection_pk, scope.variant)
        outcome.append(([(r.added, r.updated) for r in results], (replay.added, replay.updated),
                        await job_counts(pool, jobs[1]), await stored_state(pool, scope)))
    assert fresh == [False, True]  # `second` fell back to the lookup, `third` was copied; the replay looked up
    assert outcome[0] == outcome[1]
    counts, replayed, recounted, state = outcome[0]
    assert counts == [(298, 1), (300, 0)] and replayed == (0, 0) and recounted == {"Issue": (598, 1, 0)}
    written = [rid for rid, *_ in state][-599:]
    assert written == [r["id"] for r in second if r["id"] != "5"] + [r["id"] for r in third]


async def test_a_first_save_with_the_hosts_encoded_bytes_checks_them_as_it_would_encode(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    """The bytes the host encoded for its quota are stored and hashed as encoding them here would; a NUL escape
    among them still refuses the batch, backslashes that are not one do not."""
    scope, other = await new_scope(), await new_scope()
    batch = [issue(i, t=f"line\nquote\" back\\slash \\u0000-{i}" if i % 7 == 0 else "plain") for i in range(300)]
    async with pool.acquire() as conn:
        given = await records.batch_save(conn, scope, batch, encoded=contract.quota_bodies(batch, "Issue", "save"))
        assert (await records.batch_save(conn, other, batch)).added == 300
        assert given.added == 300
        hashes = ("SELECT external_id, data_hash, left(body, -meta_len) FROM records WHERE scope_id ="
                  " (SELECT id FROM record_scopes WHERE connection_pk = $1) ORDER BY external_id")
        assert await conn.fetch(hashes, scope.connection_pk) == await conn.fetch(hashes, other.connection_pk)
        assert (await records.batch_save(conn, scope, batch)).updated == 0  # the same hashes: nothing changed
        bad_scope = await new_scope()
        bad = [*batch[:200], issue("nul", t="a\x00b"), *batch[200:]]
        with pytest.raises(RecordError, match="record #200 \\(id 'nul'\\) of model 'Issue' contains a NUL"):
            await records.batch_save(conn, bad_scope, bad, encoded=contract.quota_bodies(bad, "Issue", "save"))
    assert await rows(pool, bad_scope) == {}


# ---- delete, revive, update -------------------------------------------------------------------------

async def test_soft_delete_and_a_record_that_comes_back_is_added_again(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    job = await new_job(pool, scope)
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(i) for i in range(5)], job_id=job)
        before = await rows(pool, scope)
        deleted = await records.batch_delete(conn, scope, [{"id": "1"}, {"id": 2}, {"id": "nope"}, {"id": "1"}],
                                             job_id=job)
        assert deleted.deleted == 2
        assert (await records.batch_delete(conn, scope, [{"id": "1"}], job_id=job)).deleted == 0
        after = await rows(pool, scope)
        assert after["1"]["last_action"] == "DELETED" and after["1"]["deleted_at"] is not None
        assert after["1"]["cursor"] > max(r["cursor"] for r in before.values())
        assert after["1"]["data"] == before["1"]["data"]
        assert set(await records.get_by_ids(conn, scope, ["0", "1", "2"])) == {"0"}
        assert await records.count(conn, scope) == 3

        # Same data as before the delete: still a change (it exists again), reported as ADDED.
        back = await records.batch_save(conn, scope, [issue(1), issue(3)], job_id=job)
        assert (back.added, back.updated) == (1, 0)
    final = await rows(pool, scope)
    assert final["1"]["last_action"] == "ADDED" and final["1"]["deleted_at"] is None
    assert final["1"]["cursor"] > after["1"]["cursor"]
    assert final["3"] == after["3"]
    assert await job_counts(pool, job) == {"Issue": (6, 0, 2)}
    deleted_only = await read_all(pool, scope, actions=["deleted"])
    assert [r["id"] for r in deleted_only] == ["2"]


async def test_deep_merge_update(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    job = await new_job(pool, scope)
    stored = {"id": "1", "title": "t", "labels": ["a", "b"], "user": {"login": "x", "site": {"a": 1, "b": 2}},
              "keep": 5}
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [stored, issue(2), issue(3)], job_id=job)
        await records.batch_delete(conn, scope, [{"id": "3"}], job_id=job)
        cursor_before = (await rows(pool, scope))["1"]["cursor"]
        result = await records.batch_update(conn, scope, [
            {"id": "1", "labels": ["c"], "user": {"site": {"b": 3, "c": 4}}, "new": None},
            {"id": "missing", "title": "x"},
            {"id": "3", "title": "deleted records are not updated"},
        ], job_id=job)
        assert result.updated == 1
        assert result.missing_ids == ["missing", "3"]
        got = await records.get_by_ids(conn, scope, ["1", "missing", "3"])
        assert got == {"1": {"id": "1", "title": "t", "labels": ["c"], "keep": 5, "new": None,
                             "user": {"login": "x", "site": {"a": 1, "b": 3, "c": 4}}}}
        after = await rows(pool, scope)
        assert after["1"]["last_action"] == "UPDATED" and after["1"]["cursor"] > cursor_before
        assert "missing" not in after

        # Two patches of one id in one call merge in order; a patch that changes nothing moves nothing.
        result = await records.batch_update(conn, scope, [{"id": "1", "user": {"login": "y"}},
                                                          {"id": "1", "user": {"site": {"a": 9}}}], job_id=job)
        assert result.updated == 1
        assert (await records.get_by_ids(conn, scope, ["1"]))["1"]["user"] == {
            "login": "y", "site": {"a": 9, "b": 3, "c": 4}}
        cursor = (await rows(pool, scope))["1"]["cursor"]
        assert (await records.batch_update(conn, scope, [{"id": "1", "keep": 5}], job_id=job)).updated == 0
        assert (await rows(pool, scope))["1"]["cursor"] == cursor
        # object replaced by a scalar and back
        await records.batch_update(conn, scope, [{"id": "1", "user": "nobody"}], job_id=job)
        assert (await records.get_by_ids(conn, scope, ["1"]))["1"]["user"] == "nobody"
    assert await job_counts(pool, job) == {"Issue": (3, 3, 1)}


def test_deep_merge_rules() -> None:
    assert records.deep_merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2}) == {
        "a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert records.deep_merge({"a": [1, {"x": 1}]}, {"a": [{"y": 2}]}) == {"a": [{"y": 2}]}
    assert records.deep_merge({"a": {"b": 1}}, {"a": None}) == {"a": None}
    assert records.deep_merge({"a": 1}, {"a": {"b": 1}}) == {"a": {"b": 1}}


async def test_update_and_delete_on_an_empty_scope(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    async with pool.acquire() as conn:
        assert (await records.batch_update(conn, scope, [{"id": "1", "a": 1}])).missing_ids == ["1"]
        assert (await records.batch_delete(conn, scope, [{"id": "1"}])).deleted == 0
        assert await records.delete_unseen(conn, scope, await new_job(pool, scope)) == 0
        page = await records.read_page(conn, scope)
        assert page.records() == [] and page.count == 0 and page.next_cursor is None
        assert await records.count(conn, scope) == 0


# ---- deletion detection ---------------------------------------------------------------------------

async def test_delete_unseen_after_a_successful_full_run(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    other_model = records.Scope(scope.environment_id, scope.connection_pk, "Other")
    run1 = await new_job(pool, scope)
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(i) for i in range(6)], job_id=run1, track_seen=True)
        await records.batch_save(conn, other_model, [issue(i) for i in range(3)], job_id=run1, track_seen=True)
        assert await records.delete_unseen(conn, scope, run1) == 0  # run 1 saw everything
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM job_seen_records WHERE job_id = $1", run1)

    # Run 2 sees 0-3 (over two batches, one id twice); 4 and 5 vanished upstream.
    run2 = await new_job(pool, scope)
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(0), issue(1)], job_id=run2, track_seen=True)
        await records.batch_save(conn, scope, [issue(1), issue(2), issue(3, title="changed")], job_id=run2,
                                 track_seen=True)
        before = await rows(pool, scope)
        assert await records.delete_unseen(conn, scope, run2) == 2
        assert await records.delete_unseen(conn, scope, run2) == 0  # finalize retried: nothing more
    after = await rows(pool, scope)
    assert {k for k, r in after.items() if r["last_action"] == "DELETED"} == {"4", "5"}
    assert all(after[k] == before[k] for k in "0123")
    assert await job_counts(pool, run2) == {"Issue": (0, 1, 2)}
    assert all(r["last_action"] == "ADDED" for r in (await rows(pool, other_model)).values())

    # A failed run never calls delete_unseen: whatever it did not see stays.
    run3 = await new_job(pool, scope)
    async with pool.acquire() as conn:
        await records.batch_save(conn, scope, [issue(0)], job_id=run3, track_seen=True)
    assert await rows(pool, scope) == after


# ---- concurrency ----------------------------------------------------------------------------------

async def test_consumer_paging_during_writes_sees_every_change_once_in_order(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:

    scope = await new_scope()
    n_ids = 300
    writers_done = asyncio.Event()
    rnd = random.Random(4)

    async def writer(seed: int) -> None:
        rnd = random.Random(seed)
        async with pool.acquire() as conn:
            for step in range(40):
                ids = rnd.sample(range(n_ids), 25)
                await records.batch_save(conn, scope, [issue(i, v=f"{seed}-{step}") for i in ids])
                if step % 7 == 3:
                    await records.batch_delete(conn, scope, [{"id": str(i)} for i in rnd.sample(range(n_ids), 5)])
                await asyncio.sleep(0)

    seen: list[tuple[int, str, str]] = []  # (cursor, id, version) in delivery order

    async def consumer() -> None:
        cursor = None
        async with pool.acquire() as conn:
            while True:
                done = writers_done.is_set()
                page = await records.read_page(conn, scope, cursor=cursor, limit=rnd.choice([1, 7, 50]))
                assert page.count == len(page.records_json)
                for rec in page.records():
                    meta = rec["_nango_metadata"]
                    seen.append((records.decode_cursor(meta["cursor"]), rec["id"],
                                 f"{rec.get('v')}/{meta['last_action']}"))
                    cursor = meta["cursor"]  # resume from the last record's cursor, as Nango's docs suggest
                if page.next_cursor:
                    assert page.next_cursor == cursor
                elif done:
                    return
                else:
                    await asyncio.sleep(0.002)

    reader = asyncio.create_task(consumer())
    await asyncio.gather(writer(1), writer(2))
    writers_done.set()
    await reader

    cursors = [c for c, _, _ in seen]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors), "each change once, in order"
    final = await rows(pool, scope)
    # the last thing the consumer saw of each record is its final state: no change was skipped
    last_seen = {rid: (c, v) for c, rid, v in seen}
    assert set(last_seen) == set(final)
    for rid, row in final.items():
        assert last_seen[rid] == (row["cursor"], f"{row['data'].get('v')}/{row['last_action']}")


async def test_two_writers_on_one_scope_keep_counts_and_cursors_exact(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    scope = await new_scope()
    jobs = [await new_job(pool, scope, sync=f"s{i}") for i in range(2)]
    batches = [[issue(i, v=b) for i in range(b * 40, b * 40 + 120)] for b in range(8)]  # overlapping ids

    async def write(job: int, order: list[list[dict[str, Any]]]) -> list[records.WriteResult]:
        out = []
        async with pool.acquire() as conn:
            for batch in order:
                out.append(await records.batch_save(conn, scope, batch, job_id=job))
        return out

    results = await asyncio.gather(write(jobs[0], batches), write(jobs[1], list(reversed(batches))))
    final = await rows(pool, scope)
    assert len(final) == 7 * 40 + 120
    total_added = sum(r.added for rs in results for r in rs)
    total_updated = sum(r.updated for rs in results for r in rs)
    assert total_added == len(final)  # every id was added exactly once, by one of the writers
    counts = [await job_counts(pool, j) for j in jobs]
    assert sum(c["Issue"][0] for c in counts) == total_added
    assert sum(c["Issue"][1] for c in counts) == total_updated
    cursors = [r["cursor"] for r in final.values()]
    assert len(set(cursors)) == len(cursors)
    listed = await read_all(pool, scope, limit=33)
    assert [r["id"] for r in listed] == [k for k, _ in sorted(final.items(), key=lambda kv: kv[1]["cursor"])]
    # both writers replaying the stored state change nothing
    state = [[r["data"] for r in final.values()]]
    again = await asyncio.gather(write(jobs[0], state), write(jobs[1], state))
    assert all(r.added == r.updated == 0 for rs in again for r in rs)
    assert await rows(pool, scope) == final


async def test_big_batches_of_concurrent_writers_keep_cursor_order_for_a_consumer(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    """Batches of 1,500 records (more than one block of cursors) from three writers of one scope and one of
    another: every path (empty, fresh, direct, lookup) takes its cursors in blocks, and a consumer paging
    during the writes still sees every change once, in order, each batch's records in batch order."""
    scope, other = await new_scope(), await new_scope()
    size, pool_of_ids = 1500, 4000
    writers_done = asyncio.Event()
    batch_order: dict[str, list[str]] = {}  # version -> ids in the order the batch listed them

    async def writer(target: records.Scope, name: str) -> None:
        rnd = random.Random(name)
        async with pool.acquire() as conn:
            for step in range(6):
                if step % 3 == 0:  # mostly new ids (empty, fresh or lookup path)
                    ids = rnd.sample(range(pool_of_ids), size)
                else:  # ids written before, now changed (direct path), with a few new ones
                    ids = rnd.sample(range(pool_of_ids // 2), size)
                version = f"{name}-{step}"
                batch_order[version] = [str(i) for i in ids]
                await records.batch_save(conn, target, [issue(i, v=version) for i in ids])
                await asyncio.sleep(0)

    seen: list[tuple[int, str, str]] = []  # (cursor, id, version) in delivery order

    async def consumer() -> None:
        rnd, cursor = random.Random(7), None
        async with pool.acquire() as conn:
            while True:
                done = writers_done.is_set()
                page = await records.read_page(conn, scope, cursor=cursor, limit=rnd.choice([1, 300, 2000]))
                for rec in page.records():
                    cursor = rec["_nango_metadata"]["cursor"]
                    seen.append((records.decode_cursor(cursor), rec["id"], rec["v"]))
                if not page.next_cursor:
                    if done:
                        return
                    await asyncio.sleep(0.002)

    reader = asyncio.create_task(consumer())
    await asyncio.gather(writer(scope, "a"), writer(scope, "b"), writer(scope, "c"), writer(other, "o"))
    writers_done.set()
    await reader

    cursors = [c for c, _, _ in seen]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors), "each change once, in order"
    final, final_other = await rows(pool, scope), await rows(pool, other)
    assert {rid: (c, v) for c, rid, v in seen} == {rid: (r["cursor"], r["data"]["v"]) for rid, r in final.items()}
    stored = [r["cursor"] for r in [*final.values(), *final_other.values()]]
    assert len(set(stored)) == len(stored), "cursors are unique across scopes"
    by_version: dict[str, list[str]] = {}
    for _, rid, version in seen:
        by_version.setdefault(version, []).append(rid)
    for version, ids in by_version.items():
        position = {rid: k for k, rid in enumerate(batch_order[version])}
        assert [position[rid] for rid in ids] == sorted(position[rid] for rid in ids), version


async def test_scopes_are_isolated_and_deleted_with_their_connection(
        pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    a = await new_scope()
    b = await new_scope()
    a_v2 = records.Scope(a.environment_id, a.connection_pk, a.model, "v2")
    async with pool.acquire() as conn:
        await records.batch_save(conn, a, [issue(1), issue(2)])
        await records.batch_save(conn, a_v2, [issue(1, v="variant")])
        await records.batch_save(conn, b, [issue(1, v="b")])
        assert await records.count(conn, a) == 2
        assert (await records.get_by_ids(conn, a_v2, ["1"]))["1"]["v"] == "variant"
        assert (await records.get_by_ids(conn, b, ["1"]))["1"]["v"] == "b"
        scope_ids = [r[0] for r in await conn.fetch("SELECT id FROM record_scopes WHERE connection_pk = $1",
                                                    a.connection_pk)]
        assert len(scope_ids) == 2
        assert await conn.fetchval("SELECT count(*) FROM records WHERE scope_id = any($1)", scope_ids) == 3
        await conn.execute("DELETE FROM connections WHERE id = $1", a.connection_pk)
        assert await conn.fetchval("SELECT count(*) FROM records WHERE scope_id = any($1)", scope_ids) == 0
        assert await conn.fetchval("SELECT count(*) FROM record_scopes WHERE connection_pk = $1", a.connection_pk) == 0
        assert await records.count(conn, b) == 1


async def test_reads_and_lookups_use_the_scope_indexes(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    """One connection's reads walk its own (scope_id, cursor) range; id lookups probe the primary key,
    even with statistics that know nothing of the rows just written."""
    scope = await new_scope()
    other = await new_scope()
    async with pool.acquire() as conn:
        for s in (scope, other):
            for start in range(0, 3000, 1000):
                await records.batch_save(conn, s, [{"id": str(i), "pad": "x" * 200} for i in range(start,
                                                                                               start + 1000)])
        scope_id = await conn.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1", scope.connection_pk)
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
            plan = "\n".join(r[0] for r in await conn.fetch(
                "EXPLAIN " + records._PAGE_COPY.format(scope=scope_id, after=0, extra="", limit=100)))
        assert "Index Scan using records_scope_cursor_idx" in plan and "Sort" not in plan, plan
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + records._LOOKUP, scope_id, ["1", "2"]))
        assert "records_pkey" in plan and "Seq Scan on records" not in plan, plan
        # a whole batch of ids is looked up through the key, not by reading the scope (the probes: before PG 17)
        lookup = records._LOOKUP if conn.get_server_version() >= (17, 0) else records._LOOKUP_PROBES
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + lookup, scope_id,
                                                          [str(i) for i in range(0, 6000, 2)]))
        assert "records_pkey" in plan and "Filter: (external_id" not in plan and "Seq Scan on records" not in plan, plan
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN " + records._PAGE_IDS, scope_id, ["1", "2"], 0, None, None, 100))
        assert "records_pkey" in plan and "records_scope_cursor_idx" not in plan, plan


async def test_saving_for_a_deleted_connection_fails_cleanly(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    from orchestrator.errors import NotFoundError

    scope = await new_scope()
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM connections WHERE id = $1", scope.connection_pk)
        with pytest.raises(NotFoundError, match=f"connection {scope.connection_pk} does not exist"):
            await records.batch_save(conn, scope, [issue(1)])
        assert await conn.fetchval("SELECT count(*) FROM record_scopes WHERE connection_pk = $1",
                                   scope.connection_pk) == 0


async def test_a_connection_delete_waits_for_a_batch_in_flight(pool: asyncpg.Pool, new_scope: ScopeFactory) -> None:
    """The writer holds its scope row; the cascade waits, then removes the committed batch: no orphans."""
    scope = await new_scope()
    async with pool.acquire() as writer, pool.acquire() as deleter:
        await records.batch_save(writer, scope, [issue(0)])
        scope_id = await writer.fetchval("SELECT id FROM record_scopes WHERE connection_pk = $1", scope.connection_pk)
        tx = writer.transaction()
        await tx.start()
        await records.batch_save(writer, scope, [issue(i) for i in range(1, 20)])
        delete = asyncio.create_task(deleter.execute("DELETE FROM connections WHERE id = $1", scope.connection_pk))
        await asyncio.sleep(0.2)
        assert not delete.done()  # blocked by the batch's lock on the scope row
        await tx.commit()
        await delete
        assert await writer.fetchval("SELECT count(*) FROM records WHERE scope_id = $1", scope_id) == 0
