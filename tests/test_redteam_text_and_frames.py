"""Red team, issue 16 points 5 and 7: bytes PostgreSQL refuses, undying retries, forged RPC frames.

Through the real path (deploy -> schedule -> worker -> sandboxed child): a script that logs and
prints NUL bytes and lone surrogates succeeds with its logs stored (U+FFFD, `sanitized: true`);
a script whose error holds a NUL fails with it; a job whose close hits a deterministic database
error ends failed with the reason within a bounded time; a frame that announces 16 MiB and stalls
ends the run as a protocol violation within seconds, while idle time between frames stays
allowed. Each checks that no secret reached the job and that a normal sync succeeds right after.
Unit tests: the sanitizer, the database error classification, the frame deadline.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.boundary import boundary
from orchestrator.providers.catalog import get_provider
from orchestrator.runs.host import InfraWatch
from orchestrator.runs.script_host import ScriptHost
from orchestrator.runs.sinks import MemorySink
from orchestrator.sdk import wire
from orchestrator.store import faults, text
from orchestrator.store import jobs as jobs_repo
from orchestrator.store.types import Connection, OAuth2Credentials
from orchestrator.temporal.types import ScriptJobInput
from tests.conftest import EXAMPLES, GithubSetup, Stack, setup_github, wait_for_job
from tests.redteam import assert_no_secret, normal_sync_after

ON_WEBHOOK = "\n\nasync def on_webhook(nango, payload):\n    pass\n"
SAVE_ONE = ("    await nango.batch_save([{'id': '1', 'number': 1, 'title': 't', 'body': None, 'state': 'open',"
            " 'url': 'u', 'author': None, 'labels': [], 'created_at': 'c', 'updated_at': 'u', 'closed_at': None}],"
            " 'GithubIssue')\n")


# ---- without the stack ------------------------------------------------------------------------------

def test_clean_replaces_nul_and_lone_surrogates_only() -> None:
    assert text.clean("plain é 😀") == "plain é 😀"
    assert text.clean("a\x00b\ud800c\udfff") == "a\ufffdb\ufffdc\ufffd"
    assert text.clean_noted("ok") == "ok"
    assert text.clean_noted("bad\x00") == f"bad\ufffd {text.NOTE}"
    value, changed = text.clean_json({"k\x00": ["x", "y\x00", {"z": 1}], "n": None})
    assert changed and value == {"k\ufffd": ["x", "y\ufffd", {"z": 1}], "n": None}
    same = {"a": ["b", 1]}
    assert text.clean_json(same) == (same, False)


def test_database_errors_are_transient_only_when_a_retry_can_help() -> None:
    assert faults.is_deterministic(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"))
    assert faults.is_deterministic(asyncpg.DataError("value out of range"))
    assert faults.is_deterministic(asyncpg.UniqueViolationError("duplicate key"))
    assert faults.is_deterministic(asyncpg.exceptions._base.DataError("invalid input for query argument $1"))
    for transient in (asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
                      asyncpg.exceptions.CannotConnectNowError("starting up"),
                      asyncpg.exceptions.AdminShutdownError("terminating"),
                      asyncpg.exceptions.SerializationError("could not serialize"),
                      asyncpg.exceptions.DeadlockDetectedError("deadlock"),
                      asyncpg.exceptions.TooManyConnectionsError("too many"),
                      asyncpg.InterfaceError("connection is closed"), ConnectionResetError(), TimeoutError()):
        assert faults.is_transient(transient), transient
        assert not faults.is_deterministic(transient)


async def test_infra_watch_counts_availability_faults_not_refused_values() -> None:
    class Host:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        async def call(self, method: str, params: dict[str, Any]) -> Any:
            raise self.exc

    refused = InfraWatch(Host(asyncpg.exceptions._base.DataError("cannot encode")))  # type: ignore[arg-type]
    with pytest.raises(asyncpg.InterfaceError):
        await refused.call("batch_save", {})
    assert refused.faults == []
    lost = InfraWatch(Host(asyncpg.exceptions.ConnectionDoesNotExistError("closed")))  # type: ignore[arg-type]
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await lost.call("batch_save", {})
    assert lost.faults and "ConnectionDoesNotExistError" in lost.faults[0]


class _Acts:
    @activity.defn(name="probe_db")
    @boundary
    async def act(self, inp: ScriptJobInput) -> None:
        if inp.script_name == "refused":
            raise asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")


async def test_the_boundary_makes_deterministic_database_errors_non_retryable() -> None:
    env = ActivityEnvironment()
    inp = ScriptJobInput(environment="e", environment_id=1, integration="github", connection_id="c", kind="action",
                         script_name="refused", job_id=1)
    with pytest.raises(ApplicationError) as refused:
        await env.run(_Acts().act, inp)
    assert refused.value.non_retryable and refused.value.type == "DatabaseError"
    assert "invalid byte sequence" in refused.value.message
    inp.script_name = "lost"
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):  # left to the retry policy
        await env.run(_Acts().act, inp)


async def test_a_log_batch_the_database_refuses_becomes_one_line_saying_so() -> None:
    class Sink(MemorySink):
        async def add_logs(self, entries: list[Any]) -> None:
            if any("refuse me" in message for _, message, _ in entries):
                raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
            await super().add_logs(entries)

    now = datetime.now(UTC)
    connection = Connection(id=1, environment_id=1, integration_id=1, integration_key="github", connection_id="c",
                            provider="github", created_at=now, updated_at=now,
                            credentials=OAuth2Credentials(access_token=SecretStr("tok-secret-123")))
    sink = Sink()
    host = ScriptHost(sink=sink, session=None, connection=connection,  # type: ignore[arg-type]
                      provider=get_provider("github"), environment_name="dev")
    host.log("info", "refuse me", None)
    host.log("info", "and me", None)
    await host.flush_logs()  # does not raise: the run and its heartbeats go on
    assert [(level, message.split(":")[0]) for level, message, _ in sink.logs] == [
        ("error", "2 log line(s) could not be stored")]
    host.log("info", "fine", None)
    await host.flush_logs()
    assert sink.logs[-1][1] == "fine"
    lost = Sink()
    lost.add_logs = _raise_connection_lost  # type: ignore[method-assign]
    host.sink = lost
    host.log("info", "x", None)
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):  # an availability fault is not swallowed
        await host.flush_logs()


async def _raise_connection_lost(entries: list[Any]) -> None:
    raise asyncpg.exceptions.ConnectionDoesNotExistError("closed")


async def test_a_stalled_frame_is_a_frame_error_within_its_deadline() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", 4 * 1024 * 1024) + b"{\"method\"")  # 4 MiB announced, 9 bytes sent
    started = time.monotonic()
    with pytest.raises(wire.FrameError, match="did not complete within"):
        await wire.read_frame(reader, body_timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < 0.2 + 4 / 4 + 1  # the base plus 1 s per 4 MiB announced
    half_header = asyncio.StreamReader()
    half_header.feed_data(b"\x00\x00")
    with pytest.raises(wire.FrameError, match="frame header did not complete"):
        await wire.read_frame(half_header, body_timeout_s=0.2)


async def test_idle_time_before_a_frame_is_not_limited_and_a_slow_whole_frame_arrives() -> None:
    reader = asyncio.StreamReader()

    async def feed() -> None:
        await asyncio.sleep(1.5)  # idle: longer than the deadline
        frame = wire.encode({"method": "log", "params": {"message": "late"}})
        for i in range(0, len(frame), 3):  # trickled, but within the deadline
            reader.feed_data(frame[i:i + 3])
            await asyncio.sleep(0.005)  # ~75 ms in all: a wide margin under the deadline on a loaded machine
        reader.feed_eof()
    feeding = asyncio.create_task(feed())
    assert await wire.read_frame(reader, body_timeout_s=1.0) == {"method": "log", "params": {"message": "late"}}
    assert await wire.read_frame(reader, body_timeout_s=1.0) is None
    await feeding
    # the child's side (no deadline) reads as before
    plain = asyncio.StreamReader()
    plain.feed_data(wire.encode([1, 2]))
    plain.feed_eof()
    assert await wire.read_frame(plain) == [1, 2]
    assert await wire.read_frame(plain) is None


# ---- through the stack ------------------------------------------------------------------------------

async def _deploy(stack: Stack, tmp_path: Path, source: str) -> GithubSetup:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(source + ON_WEBHOOK)
    return await setup_github(stack, issues=2, folder=folder)


async def _logs(stack: Stack, job_id: int) -> list[dict[str, Any]]:
    async with stack.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(
            "SELECT level, message, fields FROM script_logs WHERE job_id = $1 ORDER BY id", job_id)]


async def test_nul_bytes_and_lone_surrogates_in_logs_and_output_are_stored_replaced(
        stack: Stack, tmp_path: Path) -> None:
    gh = await _deploy(stack, tmp_path, (
        "import sys\n\n"
        "async def fetch_data(nango):\n"
        "    await nango.log('nul \\x00 in a log line', detail='field \\x00 value')\n"
        "    await nango.log('lone \\ud800 surrogate', other='\\udfff')\n"
        "    print('printed \\x00 nul and \\udc80 escaped')\n"
        "    sys.stdout.flush()\n"
        "    sys.stdout.buffer.write(b'raw \\xff\\x00 bytes\\n')\n"
        "    sys.stdout.flush()\n"
        "    sys.stderr.write('stderr \\x00 too\\n')\n"
        "    sys.stderr.flush()\n"
        + SAVE_ONE +
        "    await nango.log('clean line')\n"))
    jobs = await wait_for_job(stack, gh, status="success", timeout=90)
    logs = await _logs(stack, jobs[0]["id"])
    by_start = {e["message"].split(" ")[0]: e for e in logs}
    assert by_start["nul"]["message"] == "nul \ufffd in a log line"
    assert by_start["nul"]["fields"] == {"detail": "field \ufffd value", "sanitized": True}
    assert by_start["lone"]["message"] == "lone \ufffd surrogate"
    assert by_start["lone"]["fields"] == {"other": "\ufffd", "sanitized": True}
    assert by_start["printed"]["message"] == "printed \ufffd nul and \ufffd escaped"
    assert by_start["printed"]["fields"]["sanitized"] is True
    assert by_start["raw"]["message"] == "raw \ufffd\ufffd bytes"
    assert by_start["stderr"]["message"] == "stderr \ufffd too" and by_start["stderr"]["level"] == "warn"
    assert by_start["clean"]["fields"] is None
    assert all("\x00" not in e["message"] for e in logs)
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_an_error_holding_a_nul_fails_the_job_with_it(stack: Stack, tmp_path: Path) -> None:
    gh = await _deploy(stack, tmp_path, (
        "async def fetch_data(nango):\n"
        "    raise ValueError('upstream sent \\x00 in a field \\udc80')\n"))
    jobs = await wait_for_job(stack, gh, status="failed", timeout=90)
    # NUL replaced (and said so); a lone surrogate, which cannot cross the channel, arrives as its escape
    assert "upstream sent \ufffd in a field \\udc80" in jobs[0]["error"] and text.NOTE in jobs[0]["error"]
    async with stack.pool.acquire() as conn:
        details = await conn.fetchval("SELECT error_details FROM jobs WHERE id = $1", jobs[0]["id"])
    assert "ValueError" in details and "\x00" not in details
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_a_job_whose_close_the_database_refuses_ends_failed_with_the_reason(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    gh = await setup_github(stack, issues=2)
    await wait_for_job(stack, gh, status="success", timeout=90)
    calls: list[int] = []

    async def refused(conn: asyncpg.Connection, job_id: int, status: str, **kwargs: Any) -> None:
        calls.append(job_id)
        raise asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')

    monkeypatch.setattr(jobs_repo, "close_job", refused)  # the worker runs in this process
    started = time.monotonic()
    async with stack.api(gh.key) as api:
        await api.trigger_sync("github", ["issues"], gh.connection_id)
    jobs = await wait_for_job(stack, gh, count=2, status="failed", timeout=60)
    assert time.monotonic() - started < 60
    error = jobs[0]["error"]
    assert "could not be stored" in error and "invalid byte sequence" in error, error
    assert len(calls) == 1  # finalize was not retried
    async with stack.pool.acquire() as conn:
        error_type = await conn.fetchval("SELECT error_type FROM jobs WHERE id = $1", jobs[0]["id"])
        last_success = await conn.fetchval(
            "SELECT s.last_job_id FROM sync_state s JOIN connections c ON c.id = s.connection_pk"
            " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1", gh.env)
    assert error_type == "DatabaseError"
    assert last_success != jobs[0]["id"]  # the refused close did not mark the sync successful
    monkeypatch.undo()
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=2)


async def test_a_forged_frame_that_never_completes_ends_the_run_quickly(stack: Stack, tmp_path: Path) -> None:
    gh = await _deploy(stack, tmp_path, (
        "import asyncio, struct\n\n"
        "async def fetch_data(nango):\n"
        "    await nango.log('about to forge')\n"
        "    nango._channel._writer.write(struct.pack('>I', 4 * 1024 * 1024) + b'{\"method\": \"log\"')\n"
        "    await nango._channel.drain()\n"
        "    await asyncio.sleep(3600)\n"))
    started = time.monotonic()
    jobs = await wait_for_job(stack, gh, status="failed", timeout=90)
    elapsed = time.monotonic() - started
    limit = wire.frame_deadline(4 * 1024 * 1024, stack.settings.runner_frame_timeout_s)
    assert elapsed < limit + 30, elapsed  # not the sync's time limit
    error = jobs[0]["error"]
    assert "ProtocolError" in error and "4194304 bytes did not complete" in error, error
    assert "RUNNER_FRAME_TIMEOUT_S" in error
    assert [e["message"] for e in await _logs(stack, jobs[0]["id"])] == ["about to forge"]
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)


async def test_idle_time_between_frames_is_allowed(stack: Stack, tmp_path: Path) -> None:
    idle = stack.settings.runner_frame_timeout_s + 2
    gh = await _deploy(stack, tmp_path, (
        "import asyncio\n\n"
        "async def fetch_data(nango):\n"
        "    await nango.log('before')\n"
        f"    await asyncio.sleep({idle})\n"
        + SAVE_ONE +
        "    await nango.log('after')\n"))
    jobs = await wait_for_job(stack, gh, status="success", timeout=90)
    assert [e["message"] for e in await _logs(stack, jobs[0]["id"])][-1] == "after"


async def test_an_action_output_postgresql_refuses_fails_the_job_once_and_an_error_payload_is_cleaned(
        stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/actions/create_issue.py").write_text(
        "from orchestrator.sdk import ActionError\n\n"
        "async def run_action(nango, input):\n"
        "    if input.title == 'payload':\n"
        "        raise ActionError({'message': 'bad \\x00 upstream value'})\n"
        "    return {'blob': 'nul \\x00 in the output'}\n")
    yaml_text = (folder / "nango.yaml").read_text()
    (folder / "nango.yaml").write_text(
        yaml_text.replace("        output: GithubIssue\n        endpoint: POST", "        endpoint: POST"))
    gh = await setup_github(stack, issues=1, folder=folder)
    headers = {"Connection-Id": "conn-1", "Provider-Config-Key": "github"}
    started = time.monotonic()
    async with stack.api(gh.key) as api:
        err = await api.request("POST", "/action/trigger", json={"action_name": "create-issue",
                                                                   "input": {"title": "output"}},
                                ok=(500,), headers=headers)
        assert time.monotonic() - started < 60
        assert "could not be stored" in err["error"]["message"], err
        payload = await api.request("POST", "/action/trigger", json={"action_name": "create-issue",
                                                                       "input": {"title": "payload"}},
                                    ok=(400,), headers=headers)
    assert payload["error"]["payload"] == {"message": "bad \ufffd upstream value"}, payload
    async with stack.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT j.status, j.error_type, j.attempts FROM jobs j JOIN environments e ON e.id = j.environment_id"
            " WHERE e.name = $1 AND j.kind = 'action' ORDER BY j.id", gh.env)
    assert [(r["status"], r["error_type"]) for r in rows] == [("failed", "DatabaseError"),
                                                              ("failed", "action_error")]
    assert rows[0]["attempts"] <= 1
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=0)


async def test_metadata_the_database_refuses_fails_the_sync_once_with_the_reason(
        stack: Stack, tmp_path: Path) -> None:
    gh = await _deploy(stack, tmp_path, (
        "async def fetch_data(nango):\n"
        "    await nango.update_metadata({'note': 'nul \\x00 here'})\n"))
    jobs = await wait_for_job(stack, gh, status="failed", timeout=90)
    error = jobs[0]["error"]
    assert "update_metadata: the database refused a value" in error and "inside the platform" not in error, error
    async with stack.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT workflow_id, run_id FROM jobs WHERE id = $1", jobs[0]["id"])
    history = await stack.client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"]).fetch_history()
    failed = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert len(failed) == 1  # the run was not retried as an infrastructure fault
    await assert_no_secret(stack, gh.env)
    await normal_sync_after(stack, gh, done=1)
