"""No secret and no record payload in any log line, in either format, whatever raised (issue 23, point 2).

The rendered stream is captured (structlog.testing.capture_logs would bypass the renderers, which is where
tracebacks with local variables used to leak): configure_logging switches the format and the stream in
place, for the stack's API and in-process worker too, and the test restores the console format after.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import orchestrator.logging as logmod
from orchestrator.logging import configure_logging, hide, rpc_summary, scrub_text
from tests.conftest import EXAMPLES, Stack, eventually

CANARY_TOKEN = "canarytok-" + uuid.uuid4().hex
CANARY_ENV = "canaryenv-" + uuid.uuid4().hex
CANARY_RECORD = "canaryrec-" + uuid.uuid4().hex
CANARY_PASSWORD = "canarypw" + uuid.uuid4().hex[:12]

log = structlog.get_logger(__name__)


@pytest.fixture(params=["json", "console"])
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """Every log line of this process (structlog and stdlib) rendered in the format under test."""
    before_target, before_fmt = logmod._STREAM.target, logmod._OUTPUT.fmt
    buf = io.StringIO()
    configure_logging("INFO", request.param, stream=buf)
    try:
        yield buf
    finally:
        configure_logging("INFO", before_fmt, stream=before_target)


def assert_clean(out: str, *canaries: str) -> None:
    for canary in canaries:
        assert canary not in out, f"{canary[:12]}... leaked into the log:\n{out[-4000:]}"
    for line in out.splitlines():
        assert len(line) < 4000, f"a {len(line)}-character log line: {line[:300]}"


# ---- unit: the renderer and the masks ------------------------------------------------------------------

def _fail_with_locals() -> None:
    secret_key = "sk_" + "k" * 43  # noqa: F841  (locals the old tracebacks printed)
    records = [{"id": "1", "body": CANARY_RECORD}]  # noqa: F841
    token = CANARY_TOKEN  # noqa: F841
    raise RuntimeError("the database refused it")


def test_tracebacks_carry_no_local_variables_in_structlog_or_stdlib_lines(captured: io.StringIO) -> None:
    try:
        _fail_with_locals()
    except RuntimeError:
        log.exception("boom")
        logging.getLogger("temporalio.activity").exception("Completing activity as failed")
        logging.getLogger("asyncpg.pool").error("pool error", exc_info=True)
    out = captured.getvalue()
    assert out.count("_fail_with_locals") >= 3 and "the database refused it" in out  # frames are kept
    assert_clean(out, CANARY_RECORD, CANARY_TOKEN, "k" * 43)


def test_secrets_are_masked_by_value_and_by_shape(captured: io.StringIO) -> None:
    hide(CANARY_ENV, {"access_token": CANARY_TOKEN, "type": "OAUTH2"})
    try:
        raise ConnectionError(f"connect to postgres://app:{CANARY_PASSWORD}@db:5432/x failed; env {CANARY_ENV}")
    except ConnectionError:
        log.exception("connect_failed", headers={"Authorization": f"Bearer {CANARY_TOKEN}"},
                      detail=f"{CANARY_TOKEN} sk_{'q' * 40} nango_sk_{'z' * 30}",
                      url=f"/oauth/callback?code={CANARY_PASSWORD}&state=s{CANARY_PASSWORD}", obj=object())
    logging.getLogger("aiohttp.server").warning("header Authorization: Bearer %s", CANARY_TOKEN)
    out = captured.getvalue()
    assert_clean(out, CANARY_ENV, CANARY_TOKEN, CANARY_PASSWORD, "q" * 40, "z" * 30)
    assert "connect_failed" in out


def test_scrub_text_leaves_ordinary_lines_alone() -> None:
    line = '{"event": "token_refreshed", "status_code": 500, "connection": "conn-1", "records": 3}'
    assert scrub_text(line) == line
    assert scrub_text("access_token=abc123&x=1") == "access_token=***&x=1"
    assert scrub_text("postgresql://u:pw123456@h/db") == "postgresql://u:***@h/db"


def test_rpc_summary_never_holds_records() -> None:
    params = {"model": "GithubIssue", "records": [{"id": "1", "body": CANARY_RECORD}] * 500, "batch": "b1"}
    summary = rpc_summary("batch_save", params)
    assert summary == {"method": "batch_save", "model": "GithubIssue", "records": 500,
                       "params": ["batch", "model", "records"]}
    assert CANARY_RECORD not in repr(summary)


# ---- through the real stack ----------------------------------------------------------------------------

async def _environment(stack: Stack, folder: Path) -> tuple[str, str]:
    """A fresh environment with the example integration deployed, a connection holding the canary token
    and an environment variable holding the canary value."""
    from orchestrator.authoring.compile import compile_project

    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"{env}/repo", 1)
    async with stack.api(key) as api:
        await api.request("POST", "/environment-variables", json=[{"name": "CANARY", "value": CANARY_ENV}])
        await api.deploy(await asyncio.to_thread(compile_project, folder))
        await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": CANARY_TOKEN},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
    return env, key


async def test_a_request_whose_database_call_fails_logs_no_secret(
        stack: Stack, tmp_path: Path, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.store import environment_variables as envvars_repo

    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    _, key = await _environment(stack, folder)
    encryption_key = stack.settings.encryption_key.get_secret_value()
    original = envvars_repo.list_all

    async def failing(conn: Any, sealer: Any, environment_id: int) -> Any:
        variables = await original(conn, sealer, environment_id)  # opened: the values are in hand
        caller_key, records, token = key, [{"id": "1", "body": CANARY_RECORD}], CANARY_TOKEN  # noqa: F841
        raise RuntimeError(f"lost the database at postgres://app:{CANARY_PASSWORD}@db/x while serving {caller_key} "
                           f"(values {[v['value'] for v in variables]}, sealing with {encryption_key}, "
                           f"Authorization: Bearer {token})")

    monkeypatch.setattr(envvars_repo, "list_all", failing)
    async with stack.api(key) as api:
        with pytest.raises(Exception) as err:
            await api.request("GET", "/environment-variables")
    assert "500" in str(err.value) or "server_error" in str(err.value)
    out = captured.getvalue()
    assert "unhandled_error" in out and "RuntimeError" in out
    assert_clean(out, key, CANARY_TOKEN, CANARY_ENV, CANARY_RECORD, CANARY_PASSWORD, encryption_key)


async def test_an_rpc_handler_that_raises_logs_no_secret_and_no_record(
        stack: Stack, tmp_path: Path, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.runs.script_host import ScriptHost

    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    (folder / "github/syncs/issues.py").write_text(
        "async def fetch_data(nango):\n"
        "    token = await nango.get_token()\n"
        "    env = await nango.get_environment_variables()\n"
        f"    await nango.batch_save([{{'id': str(i), 'number': i, 'title': '{CANARY_RECORD}', 'body': token,"
        " 'state': str(env), 'url': 'u', 'author': None, 'labels': [], 'created_at': 'c', 'updated_at': 'u',"
        " 'closed_at': None} for i in range(300)], 'GithubIssue')\n\n"
        "async def on_webhook(nango, payload):\n    pass\n")

    async def refusing(self: ScriptHost, model: str, records: list[Any], batch: str | None = None,
                       **_: Any) -> Any:
        credentials = self.connection.credentials  # noqa: F841  (locals the old tracebacks printed)
        variables = self._environment_variables
        raise RuntimeError(f"refused a batch of {len(records)} for {model}: token {CANARY_TOKEN}, "
                           f"variables {[v['value'] for v in variables]}")

    monkeypatch.setattr(ScriptHost, "rpc_batch_save", refusing)
    env, key = await _environment(stack, folder)

    async def failed() -> dict[str, Any]:
        async with stack.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT j.status, j.error FROM jobs j JOIN connections c ON c.id = j.connection_pk"
                " JOIN environments e ON e.id = c.environment_id WHERE e.name = $1 AND j.kind = 'sync'"
                " AND j.status <> 'running'", env)
        assert row is not None and row["status"] == "failed", row
        return dict(row)
    job = await eventually(failed, timeout=90)
    assert "batch_save failed inside the platform" in (job["error"] or "")
    out = captured.getvalue()
    assert "rpc_failed" in out and "GithubIssue" in out and "300" in out  # the call, summarised
    assert_clean(out, key, CANARY_TOKEN, CANARY_ENV, CANARY_RECORD,
                 stack.settings.encryption_key.get_secret_value())
