"""Record validation (issue 21): records checked against their nango.yaml model as a script saves them.

End to end on the real stack for each `record_validation` setting (off, warn, reject): which records are stored
and what the job's log says; then the type cases a model can express, checked directly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestrator.authoring.compile import compile_project
from orchestrator.config.nango_yaml import parse_config
from orchestrator.config.record_schema import RecordSchema
from orchestrator.runs.validation import MAX_LOGGED, RecordCheck
from tests.conftest import Stack, eventually

NANGO_YAML = """\
integrations:
  github:
    syncs:
      tickets:
        runs: every day
        output: Ticket
        endpoint: GET /tickets
models:
  Owner:
    login: string
  Ticket:
    id: string
    number: integer
    title: string
    state: open | closed
    labels: string[]
    owner?: Owner
"""

SCRIPT = '''\
from orchestrator.sdk import NangoSync

GOOD = {"number": 1, "title": "fine", "state": "open", "labels": ["a"], "owner": {"login": "ann"}}


async def fetch_data(nango: NangoSync) -> None:
    await nango.batch_save([
        {"id": "ok-1", **GOOD},
        {**GOOD, "id": "bad-type", "number": "2"},
        {"id": "missing", "number": 3, "state": "closed", "labels": []},
        {**GOOD, "id": "bad-nested", "owner": {"login": 7}},
        {**GOOD, "id": "extra-ok", "owner": None, "not_in_the_model": True},
    ], "Ticket")
    await nango.batch_save([{**GOOD, "id": f"bulk-{i}", "state": "merged"} for i in range(30)], "Ticket")
'''


async def _deploy(stack: Stack, folder: Path, mode: str, nango_yaml: str, script: str) -> str:
    """The tickets sync deployed in a fresh environment set to `mode`, connection 'c1' created (its first run
    starts); returns the environment's key."""
    (folder / "github" / "syncs").mkdir(parents=True)
    (folder / "nango.yaml").write_text(nango_yaml)
    (folder / "github" / "syncs" / "tickets.py").write_text(script)
    _, key = await stack.new_environment()
    async with stack.api(key) as api:
        await api.set_script_settings(record_validation=mode)
        await api.deploy(await asyncio.to_thread(compile_project, folder))
        await api.create_connection("github", "c1", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url})
    return key


async def _finished(stack: Stack, key: str, count: int = 1) -> dict[str, Any]:
    """The newest sync job once `count` have finished (it must have succeeded)."""
    async with stack.api(key) as api:
        async def check() -> dict[str, Any]:
            jobs = await api.list_jobs(integration="github", connection_id="c1", kind="sync")
            done = [j for j in jobs if j["status"] not in ("running", None)]
            assert len(done) >= count and done[0] is jobs[0], jobs
            return jobs[0]
        job = await eventually(check)
    assert job["status"] == "success", job
    return job


async def _run_sync(stack: Stack, tmp: Path, mode: str) -> tuple[set[str], list[dict[str, Any]]]:
    """Deploy the tickets sync in a fresh environment set to `mode`, let its first run finish; return the ids
    stored and the job's log lines."""
    key = await _deploy(stack, tmp / mode, mode, NANGO_YAML, SCRIPT)
    job = await _finished(stack, key)
    async with stack.api(key) as api:
        ids = {r["id"] for r in await api.all_records("github", "c1", "Ticket")}
        return ids, await api.job_logs(job["id"])


def _checks(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if "of model Ticket" in line["message"] or "model Ticket:" in line["message"]]


async def test_off_warn_and_reject_on_the_real_stack(stack: Stack, tmp_path: Path) -> None:
    (off_ids, off_logs), (warn_ids, warn_logs), (reject_ids, reject_logs) = await asyncio.gather(
        *(_run_sync(stack, tmp_path, mode) for mode in ("off", "warn", "reject")))
    every = {"ok-1", "bad-type", "missing", "bad-nested", "extra-ok"} | {f"bulk-{i}" for i in range(30)}

    # off (Nango's default): everything saved, nothing checked
    assert off_ids == every
    assert _checks(off_logs) == []

    # warn: everything saved, each problem a warning naming the record and the field
    assert warn_ids == every
    lines = _checks(warn_logs)
    assert {line["level"] for line in lines} == {"warn"}
    first = {line["message"] for line in lines[:3]}
    assert first == {
        "record 'bad-type' of model Ticket: field 'number' should be integer, got string",
        "record 'missing' of model Ticket: field 'title' is required but missing",
        "record 'bad-nested' of model Ticket: field 'owner.login' should be string, got integer",
    }
    assert {"model": "Ticket", "id": "bad-type", "field": "number"} in [line["fields"] for line in lines]
    # the 30 bad records of the second batch: MAX_LOGGED lines, then one counting the rest
    bulk = lines[3:]
    assert len(bulk) == MAX_LOGGED + 1
    assert bulk[0]["message"] == ("record 'bulk-0' of model Ticket: field 'state' should be 'open' | 'closed', "
                                  "got 'merged'")
    assert bulk[-1]["message"] == (f"model Ticket: {30 - MAX_LOGGED} more problems in this batch not logged; "
                                   "30 of 30 records do not match the model and were saved anyway")

    # reject: only the records that match are saved (a key the model does not name is fine: models are open)
    assert reject_ids == {"ok-1", "extra-ok"}
    lines = _checks(reject_logs)
    assert {line["level"] for line in lines} == {"error"}
    assert lines[0]["message"] == "record 'bad-type' of model Ticket: field 'number' should be integer, got string"
    assert lines[-1]["message"].endswith("30 of 30 records do not match the model and were not saved")


async def test_reject_keeps_the_stored_version_of_a_record_it_refuses(stack: Stack, tmp_path: Path) -> None:
    """Nothing stored is lost: a record that matched once and no longer does keeps what was stored, even in a full
    sync with track_deletes, where a record the run did not save counts as gone."""
    yaml = NANGO_YAML.replace("        output: Ticket\n", "        output: Ticket\n        sync_type: full\n"
                              "        track_deletes: true\n")
    script = ('from orchestrator.sdk import NangoSync\n\n\nasync def fetch_data(nango: NangoSync) -> None:\n'
              '    bad = (await nango.get_metadata()).get("bad")\n'
              '    await nango.batch_save([{"id": "t1", "number": "one" if bad else 1, "title": "t", "state": "open",'
              ' "labels": []}], "Ticket")\n')
    key = await _deploy(stack, tmp_path / "full", "reject", yaml, script)
    await _finished(stack, key)
    async with stack.api(key) as api:
        await api.set_metadata("github", "c1", {"bad": True})
        await api.request("POST", "/sync/trigger", json={"syncs": ["tickets"], "provider_config_key": "github",
                                                         "connection_id": "c1"})
        job = await _finished(stack, key, count=2)
        assert any("field 'number' should be integer" in line["message"] for line in await api.job_logs(job["id"]))
        (record,) = await api.all_records("github", "c1", "Ticket")
    assert record["number"] == 1 and record["_nango_metadata"]["deleted_at"] is None


# --------------------------------------------------------------------------- the type cases

MODELS = """\
integrations: {}
models:
  Base:
    id: string
    created_at: date
  User:
    login: string
    admin?: boolean
  Issue:
    __extends: Base
    number: integer
    score: number
    title: string
    body?: string
    state: open | closed
    kind: "'bug' | 'feature' | null"
    author: User | null
    labels: string[]
    grid: integer[][]
    meta:
      source: string
      tags?: string[]
    comments:
      - text: string
    closed_at: date | undefined
    extra: any
    replies?: Issue[]
  Bag:
    id: string
    __string: integer
"""

GOOD: dict[str, Any] = {
    "id": "1", "created_at": "2024-05-01T10:00:00Z", "number": 1, "score": 1.5, "title": "t", "state": "open",
    "kind": None, "author": {"login": "ann"}, "labels": ["x"], "grid": [[1, 2]], "meta": {"source": "api"},
    "comments": [{"text": "hi"}], "extra": {"anything": [1]}, "not_in_the_model": 3,
}


@pytest.fixture(scope="module")
def schema() -> RecordSchema:
    return RecordSchema(parse_config(MODELS))


def test_a_record_that_matches_passes(schema: RecordSchema) -> None:
    assert schema.check("Issue", GOOD) == []
    # optional fields absent, or null (the generated Python models write None for an unset optional field)
    assert schema.check("Issue", {**GOOD, "body": None, "closed_at": None, "author": None}) == []
    assert schema.check("Issue", {**GOOD, "score": 2, "kind": "bug", "replies": [GOOD]}) == []
    assert schema.check("Issue", {**GOOD, "number": 2.0, "grid": [[1.0]]}) == []   # integral, as JSON Schema says


@pytest.mark.parametrize(("change", "expected"), [
    ({"number": "1"}, [("number", "should be integer, got string")]),
    ({"number": True}, [("number", "should be integer, got boolean")]),       # a bool is not a number
    ({"number": 1.5}, [("number", "should be integer, got number")]),
    ({"score": False}, [("score", "should be number, got boolean")]),
    ({"title": None}, [("title", "should be string, got null")]),            # required: null is not a string
    ({"body": 3}, [("body", "should be string, got integer")]),             # optional, but typed when present
    ({"state": "merged"}, [("state", "should be 'open' | 'closed', got 'merged'")]),
    ({"kind": "other"}, [("kind", "should be 'bug' | 'feature' | null, got 'other'")]),
    ({"author": "ann"}, [("author", "should be User | null, got string")]),
    ({"author": {"login": 7}}, [("author.login", "should be string, got integer")]),   # the union's member
    ({"labels": "x"}, [("labels", "should be string[], got string")]),
    ({"labels": ["x", 2]}, [("labels[1]", "should be string, got integer")]),
    ({"grid": [[1], [2, "3"]]}, [("grid[1][1]", "should be integer, got string")]),
    ({"meta": {"tags": "x"}}, [("meta.source", "is required but missing"),
                               ("meta.tags", "should be string[], got string")]),
    ({"comments": [{"text": "a"}, {}]}, [("comments[1].text", "is required but missing")]),
    ({"created_at": "yesterday"},
     [("created_at", "should be date (an ISO 8601 date-time string), got string 'yesterday'")]),
    ({"replies": [{**GOOD, "id": 5}]}, [("replies[0].id", "should be string, got integer")]),  # recursive
])
def test_each_type_case_names_the_field(schema: RecordSchema, change: dict[str, Any],
                                        expected: list[tuple[str, str]]) -> None:
    assert schema.check("Issue", {**GOOD, **change}) == expected


def test_missing_fields_of_the_model_and_of_what_it_extends(schema: RecordSchema) -> None:
    record = {k: v for k, v in GOOD.items() if k not in ("id", "title")}
    assert schema.check("Issue", record) == [("id", "is required but missing"), ("title", "is required but missing")]
    assert schema.check("Issue", ["not", "an", "object"]) == [("", "should be an object (Issue), got array")]


def test_string_maps_type_every_other_key(schema: RecordSchema) -> None:
    assert schema.check("Bag", {"id": "b", "a": 1, "b": 2}) == []
    assert schema.check("Bag", {"id": "b", "a": 1, "b": "2"}) == [("b", "should be integer, got string")]


def test_reject_keeps_the_valid_records_and_warn_keeps_all(schema: RecordSchema) -> None:
    batch = [GOOD, {**GOOD, "id": "2", "number": "x"}, {"number": 1}, "text",
             *({**GOOD, "id": f"n{i}", "score": "x"} for i in range(10))]
    check = RecordCheck("reject", schema=schema)
    kept, problems, refused = check.check("Issue", batch)
    assert kept == [GOOD]
    assert refused == ["2", *(f"n{i}" for i in range(10))]   # for the host to mark seen
    assert problems[0].message == "record '2' of model Issue: field 'number' should be integer, got string"
    assert (problems[0].record_id, problems[0].field) == ("2", "number")
    # a record without an id is named by its place in the batch
    assert problems[1].record_id is None
    assert problems[1].message == "record #3 of model Issue in this batch (no id): field 'id' is required but missing"
    assert len(problems) == MAX_LOGGED + 1   # 24 problems: MAX_LOGGED of them, then one counting the rest
    assert problems[-1].message == ("model Issue: 4 more problems in this batch not logged; 13 of 14 records do not "
                                    "match the model and were not saved")

    kept, problems, _ = RecordCheck("warn", schema=schema).check("Issue", batch)
    assert kept == batch


def test_a_model_without_a_definition_is_said_once_and_saved_unchecked() -> None:
    check = RecordCheck("reject", models={"Other": {"id": "string"}})
    kept, problems, _ = check.check("Ticket", [{"id": 1}])
    assert kept == [{"id": 1}]
    assert [p.message for p in problems] == [
        "model Ticket has no definition in the deployed nango.yaml: its records are saved unchecked"]
    assert check.check("Ticket", [{"id": 2}]) == ([{"id": 2}], [], [])


def test_a_union_keeps_a_value_two_open_alternatives_accept() -> None:
    """Nango's JSON Schema says `oneOf`, which refuses a value matching two alternatives; we keep it (README)."""
    schema = RecordSchema(parse_config("""\
integrations: {}
models:
  Person:
    name: string
  Company:
    name: string
    vat?: string
  Contact:
    id: string
    owner: Person | Company
"""))
    assert schema.check("Contact", {"id": "1", "owner": {"name": "Ann"}}) == []  # fits both: kept
    assert schema.check("Contact", {"id": "1", "owner": {"name": "Ann", "vat": "x"}}) == []
    assert schema.check("Contact", {"id": "1", "owner": {"vat": "x"}}) != []  # fits neither: named
