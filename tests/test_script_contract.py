"""The script contract is defined once and production and `nango_mock` agree on it.

Each case runs the same script twice: in the sandboxed child against a real ScriptHost and
PostgreSQL (ScriptBench, the production path), and in-process against `NangoMock`. The script
logs what each call did and what ended up stored; both runs must log exactly the same lines
(accepted or refused, the same error naming the record, the same warnings, the same records).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from orchestrator.authoring import checks
from orchestrator.crypto import Sealer
from orchestrator.runner import child
from orchestrator.runner.host import Runner
from orchestrator.runs.sinks import MemorySink
from orchestrator.runs.testing import ScriptBench
from orchestrator.sdk import contract
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.store.pool import init_connection
from orchestrator.testing import NangoMock

SCRIPT = '''
import json
from orchestrator.sdk import NangoError, NangoSync

OPS = json.loads({ops!r})


async def fetch_data(nango: NangoSync) -> None:
    for method, records in OPS:
        try:
            await getattr(nango, method)(records, "Row")
            await nango.log(method + " ok")
        except NangoError as exc:
            await nango.log(method + " refused: " + exc.type + ": " + exc.message)
    got = await nango.get_records_by_id(["0", "1", "2", "a", "missing"], "Row")
    await nango.log("stored " + json.dumps(got, sort_keys=True))
'''

NESTED = {"id": "a", "labels": ["x", "y"], "user": {"login": "u", "site": {"a": 1, "b": 2}}, "keep": 5}
CASES: dict[str, list[tuple[str, list[Any]]]] = {
    "id 0 is valid": [("batch_save", [{"id": 0, "n": 0}, {"id": 1, "n": 1}])],
    "empty id": [("batch_save", [{"id": 1}, {"id": "", "n": 1}])],
    "missing id": [("batch_save", [{"id": 1}, {"n": 1}])],
    "id None": [("batch_save", [{"id": None}])],
    "id True": [("batch_save", [{"id": 0}, {"id": True}])],
    "float id": [("batch_save", [{"id": 1.5}])],
    "not an object": [("batch_save", [{"id": 1}, "text"])],
    "duplicate ids keep the last": [("batch_save", [{"id": 1, "v": 1}, {"id": 2}, {"id": 1, "v": 2},
                                                    {"id": "2", "v": 3}])],
    "nested merge": [
        ("batch_save", [NESTED, {"id": 1, "n": 1}]),
        ("batch_update", [{"id": "a", "labels": ["z"], "user": {"site": {"b": 3, "c": 4}}, "new": None},
                          {"id": "a", "user": {"login": "v"}}, {"id": "missing", "n": 1}]),
    ],
    "bad update or delete": [
        ("batch_save", [{"id": 0, "n": 0}]),
        ("batch_update", [{"id": 0, "n": 1}, {"id": None, "n": 2}]),
        ("batch_delete", [{"id": 0}, {"id": False}]),
    ],
    "delete": [("batch_save", [{"id": 0}, {"id": 1}, {"id": 2}]), ("batch_delete", [{"id": 0}, {"id": "1"}])],
    "NUL in text": [("batch_save", [{"id": 1, "t": "a\x00b"}])],
    "record over the size cap": [("batch_save", [{"id": 1, "n": 1}, {"id": 2, "t": "x" * contract.MAX_RECORD_BYTES}]),
                                 ("batch_save", [{"id": 3, "t": "x" * (contract.MAX_RECORD_BYTES - 100)}])],
}


@pytest.fixture(scope="module")
async def bench(db_ready: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScriptBench]:
    pool = await asyncpg.create_pool(db_ready, init=init_connection, min_size=1, max_size=4)
    session = aiohttp.ClientSession()
    runner = await Runner.create(warm=1)
    sb = await ScriptBench(pool, Sealer(os.urandom(32)), session, tmp_path_factory.mktemp("contract"),
                           runner).setup()
    try:
        yield sb
    finally:
        await runner.close()
        await session.close()
        await pool.close()


async def production(bench: ScriptBench, source: str) -> list[tuple[str, str]]:
    connection = await bench.connection()
    outcome, host = await bench.run(source, connection, sync_name="contract")
    assert outcome.ok, outcome.error
    async with bench.pool.acquire() as conn:
        logs = await jobs_repo.logs(conn, host.job_id)
    return [(entry["level"], entry["message"]) for entry in logs]


async def mocked(source: str) -> list[tuple[str, str]]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "contract_script", "exec"), namespace)
    mock = NangoMock(kind="sync")
    await namespace["fetch_data"](mock.nango)
    return [(entry["level"], entry["message"]) for entry in mock.logs]


@pytest.mark.parametrize("case", list(CASES))
async def test_production_and_nango_mock_agree(bench: ScriptBench, case: str) -> None:
    source = SCRIPT.format(ops=json.dumps(CASES[case]))
    prod = await production(bench, source)
    mock = await mocked(source)
    assert mock == prod
    assert prod[-1][1].startswith("stored ")


UNENCODABLE = """
from orchestrator.sdk import NangoSync


async def fetch_data(nango: NangoSync) -> None:
    for record in ({"id": 1, "tags": {"a"}}, {"id": 2, "n": 2 ** 70}):
        try:
            await nango.batch_save([record], "Row")
            await nango.log("saved")
        except TypeError as exc:
            await nango.log("refused: " + type(exc).__name__)
    await nango.log("stored " + str(sorted(await nango.get_records_by_id(["1", "2"], "Row"))))
"""


async def test_what_cannot_cross_the_channel_is_refused_by_both(bench: ScriptBench) -> None:
    """A set or an integer past 64 bits never reaches the host: the channel's encoding refuses it, in both."""
    prod = await production(bench, UNENCODABLE)
    assert prod == await mocked(UNENCODABLE)
    assert [message for _, message in prod] == ["refused: TypeError", "refused: TypeError", "stored []"]


async def test_what_they_agree_on(bench: ScriptBench) -> None:
    """Spot checks of the outcomes themselves (the comparison above would pass if both were wrong)."""
    async def run(case: str) -> list[str]:
        return [message for _, message in await mocked(SCRIPT.format(ops=json.dumps(CASES[case])))]

    assert await run("id 0 is valid") == [
        "batch_save ok", 'stored {"0": {"id": 0, "n": 0}, "1": {"id": 1, "n": 1}}']
    for case in ("empty id", "missing id", "id None", "id True", "float id"):
        refused = (await run(case))[0]
        assert refused.startswith("batch_save refused: invalid_record: record #"), refused
        assert "has no usable 'id'" in refused
    assert (await run("missing id"))[0].startswith("batch_save refused: invalid_record: record #1 of model 'Row'")
    assert (await run("empty id"))[-1] == "stored {}"  # a refused batch writes nothing
    dupes = await run("duplicate ids keep the last")
    assert dupes[0] == contract.duplicate_ids_warning("Row", ["1", "2"])
    assert dupes[-1] == 'stored {"1": {"id": 1, "v": 2}, "2": {"id": "2", "v": 3}}'
    merged = await run("nested merge")
    assert contract.missing_ids_warning("Row", ["missing"]) in merged
    assert json.loads(merged[-1].removeprefix("stored "))["a"] == {
        "id": "a", "labels": ["z"], "keep": 5, "new": None, "user": {"login": "v", "site": {"a": 1, "b": 3, "c": 4}}}
    bad = await run("bad update or delete")
    assert bad[1].startswith("batch_update refused: invalid_record: record #1") and bad[2].startswith(
        "batch_delete refused: invalid_record: record #1")
    assert bad[-1] == 'stored {"0": {"id": 0, "n": 0}}'
    assert (await run("delete"))[-1] == 'stored {"2": {"id": 2}}'
    big = await run("record over the size cap")
    assert big[0].startswith("refused: record #1 (id '2') of model 'Row' is ") and big[0].endswith(
        f"the limit is {contract.MAX_RECORD_BYTES} bytes per record (RUNNER_MAX_RECORD_BYTES)"), big[0]
    assert big[1].startswith("batch_save refused: invalid_record: record #1 (id '2')") and big[2] == "batch_save ok"


async def test_memory_and_database_sinks_count_alike(bench: ScriptBench) -> None:
    """The dry run's sink reports the same added/updated/deleted counts as the store."""
    connection = await bench.connection()
    scope = records_repo.Scope(bench.environment_id, connection.id, "Row")
    memory = MemorySink()
    batches: list[tuple[str, list[dict[str, Any]]]] = [
        ("save", [{"id": 0, "a": 1}, {"id": 1, "a": 1}]),
        ("save", [{"id": 0, "a": 1}, {"id": 1, "a": 2}, {"id": 2}]),
        ("update", [{"id": 2, "b": {"c": 1}}, {"id": 9}]),
        ("update", [{"id": 2, "b": {"c": 1}}]),
        ("delete", [{"id": 0}, {"id": 0}, {"id": 7}]),
        ("save", [{"id": 0, "a": 1}]),
    ]
    async with bench.pool.acquire() as conn:
        for kind, batch in batches:
            db = await getattr(records_repo, f"batch_{kind}")(conn, scope, batch)
            mem = await getattr(memory, kind)("Row", batch)
            assert (mem.added, mem.updated, mem.deleted, mem.duplicate_ids, mem.missing_ids) == (
                db.added, db.updated, db.deleted, db.duplicate_ids, db.missing_ids), (kind, batch)
        ids = ["0", "1", "2", "9"]
        assert await memory.get_by_ids("Row", ids) == await records_repo.get_by_ids(conn, scope, ids)


def test_one_definition_of_entry_points_and_imports() -> None:
    assert (checks.SYNC, checks.ACTION, checks.WEBHOOK, checks.EVENT) == tuple(
        contract.ENTRY_POINTS[k] for k in ("sync", "action", "webhook", "event"))
    assert {k: e.name for k, e in contract.ENTRY_POINTS.items()} == {
        "sync": "fetch_data", "action": "run_action", "webhook": "on_webhook", "event": "on_event"}
    assert not hasattr(child, "ENTRY_POINTS") and not hasattr(child, "ALLOWED_THIRD_PARTY")
    assert records_repo.deep_merge is contract.deep_merge
    assert contract.import_kind("json") == "stdlib" and contract.import_kind("models.x") == "models"
    assert contract.import_kind("orchestrator", ["sdk"]) == "sdk"
    assert contract.import_kind("orchestrator") == "platform"
    assert contract.import_kind("orchestrator.runner") == "platform"
    assert contract.import_kind("helpers.api", None, ["helpers"]) == "folder"
    assert contract.import_kind("requests") == "other"
    assert contract.forbidden_import("orchestrator.store") == (
        "import of 'orchestrator.store' is not allowed: scripts may use only orchestrator.sdk from the platform")


class _Record(dict):  # type: ignore[type-arg]
    """A dict subclass: accepted as a record like any dict."""


def _one_by_one(records: list[Any], model: str) -> tuple[list[contract.Item], list[str]]:
    """dedupe as the rules say it, one record at a time (what the batch-wide fast path must agree with)."""
    by_id: dict[str, contract.Item] = {}
    dupes: list[str] = []
    for index, record in enumerate(records):
        rid = contract.record_id(record, index, model)
        if rid in by_id:
            dupes.append(rid)
            del by_id[rid]
        by_id[rid] = (rid, record, index)
    return list(by_id.values()), list(dict.fromkeys(dupes))


@pytest.mark.parametrize("batch", [
    [], [{"id": "a"}, {"id": "b"}], [{"id": 0}, {"id": "1"}, {"id": 2**64}], [{"id": 1}, {"id": "1"}],
    [{"id": "a", "v": 1}, {"id": "b"}, {"id": "a", "v": 2}], [_Record(id="a"), {"id": "b"}], [{"id": "é" * 255}],
    [{"id": "a"}, {"id": ""}], [{"id": 1}, {"id": ""}], [{"id": "a"}, {"id": True}], [{"id": "a"}, {"id": 1.0}],
    [{"id": "a"}, {}], [{"id": "a"}, {"id": "x" * 256}], [{"id": 10**300}], [{"id": "a"}, {"id": "n\x00"}],
    [{"id": "a"}, "text"], [{"id": "a"}, None],
])
def test_dedupe_of_a_whole_batch_agrees_with_the_per_record_rules(batch: list[Any]) -> None:
    try:
        expected: Any = _one_by_one(batch, "Row")
    except contract.InvalidRecord as exc:
        expected = (exc.message, exc.details)
    try:
        got: Any = contract.dedupe(batch, "Row")
    except contract.InvalidRecord as exc:
        got = (exc.message, exc.details)
    assert got == expected


def test_quota_bodies_encode_each_record_and_name_the_first_too_big() -> None:
    batch = [{"id": 1, "b": 2, "a": 1}, {"id": 2, "when": {1, 2}}, {"id": 3, "t": "x" * 50}, {"id": 4, "t": "y" * 60}]
    assert contract.quota_bodies(batch[:1], "Row", "batchSave") == [b'{"a":1,"b":2,"id":1}']
    assert contract.quota_bodies(batch[:2], "Row", "batchSave") == [b'{"a":1,"b":2,"id":1}', None]
    for records in (batch, [batch[0], *batch[2:]]):  # with and without a record that is not JSON
        with pytest.raises(contract.InvalidRecord) as err:
            contract.quota_bodies(records, "Row", "batchSave", max_bytes=40)
        assert err.value.message.startswith(f"record #{len(records) - 2} (id '3') of model 'Row' is 65 bytes")
    assert contract.quota_bodies([], "Row", "batchSave") == []
