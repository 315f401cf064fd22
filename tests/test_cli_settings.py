"""Issue 21, paper cuts: every `nango` command finds its settings the same way (the environment, the integrations
folder's `.env`, a running `nango dev` stack's `.nango/dev.json`), a service that does not answer is one line naming
the address and the setting, `nango --version`, and `nango server` / `nango worker` stop without a warning.

Real processes, run from an integrations folder as a user would (`python -m orchestrator`, cwd set).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from orchestrator.cli.settings_discovery import running_dev_stack
from orchestrator.client import NangoClient
from orchestrator.devstack.processes import free_port
from orchestrator.startup import address
from tests.conftest import EXAMPLES, Stack, eventually, setup_github
from tests.test_faults import WorkerProcess
from tests.test_scale_out import _api_process

SETTINGS = ("DATABASE_URL", "DATABASE_PASSWORD", "TEMPORAL_ADDRESS", "ENCRYPTION_KEY", "NANGO_HOSTPORT",
            "NANGO_SECRET_KEY", "NANGO_ENVIRONMENT")


def _folder(tmp: Path) -> Path:
    """An integrations folder (nango.yaml, a script folder) as `nango init` leaves it."""
    folder = tmp / "nango-integrations"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__", ".env", ".nango"))
    return folder


def _dotenv(stack: Stack, **overrides: str) -> str:
    s = stack.settings
    values = {"DATABASE_URL": s.database_url.get_secret_value(), "TEMPORAL_ADDRESS": s.temporal_address,
              "ENCRYPTION_KEY": s.encryption_key.get_secret_value(), **overrides}
    return "".join(f'{k}="{v}"\n' for k, v in values.items())


async def _nango(cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """`nango ARGS` run in `cwd` with none of the platform's settings in its environment but `env`."""
    clean = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", *args, cwd=cwd, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_admin_run_from_an_integrations_folder_reads_its_env(stack: Stack, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / ".env").write_text(_dotenv(stack) + "NANGO_SECRET_KEY_DEV=unused-by-admin\n")
    gh_env, _ = await stack.new_environment()
    # from a script's folder below the integrations folder, as from the folder itself
    code, out, err = await _nango(folder / "github", "admin", "env", "list", "--json")
    assert code == 0, err
    assert gh_env in {row["name"] for row in json.loads(out)}
    code, out, err = await _nango(folder, "admin", "syncs", "list", "-e", gh_env, "--json")  # Temporal too
    assert (code, json.loads(out)) == (0, []), err


async def test_the_environment_wins_over_env_and_env_over_a_running_dev_stack(stack: Stack, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    dead = free_port()
    # a running `nango dev` one folder up (this test's process stands for it): its database and key are used...
    home = tmp_path / ".nango"
    home.mkdir()
    s = stack.settings
    (home / "dev.json").write_text(json.dumps({"database_url": s.database_url.get_secret_value(),
                                               "temporal_address": s.temporal_address, "pid": os.getpid()}))
    (home / "dev-secrets.json").write_text(json.dumps({"encryption_key": s.encryption_key.get_secret_value()}))
    assert running_dev_stack(folder) is not None
    name, _ = await stack.new_environment()
    code, out, err = await _nango(folder, "admin", "env", "list")
    assert code == 0 and name in out, err
    # ... unless the folder's .env says otherwise, and the process environment outranks both
    (folder / ".env").write_text(f"DATABASE_URL=postgresql://postgres@127.0.0.1:{dead}/postgres\n")
    code, _, err = await _nango(folder, "admin", "env", "list")
    assert code == 1 and f"127.0.0.1:{dead}" in err
    code, _, err = await _nango(folder, "admin", "env", "list", DATABASE_URL=s.database_url.get_secret_value())
    assert code == 0, err
    # a dev.json left by a stack that was killed is passed over
    (home / "dev.json").write_text(json.dumps({"database_url": "postgresql://x@127.0.0.1:1/x", "pid": 2 ** 22 + 1}))
    assert running_dev_stack(folder) is None


async def test_deploy_and_dryrun_find_a_running_dev_stack(stack: Stack, tmp_path: Path) -> None:
    """With no flag, environment variable or .env naming them, `nango deploy` and `nango dryrun` take the API and
    the key from a `nango dev` running in this folder or a parent (this test's process stands for it)."""
    gh = await setup_github(stack, issues=2)
    folder = _folder(tmp_path)
    (tmp_path / ".nango").mkdir()
    (tmp_path / ".nango" / "dev.json").write_text(json.dumps({
        "api_url": stack.api_url, "secret_key": gh.key, "environment": gh.env, "pid": os.getpid()}))
    code, _, err = await _nango(folder, "deploy")
    assert code == 0 and f"uploading 1 bundle to {stack.api_url}" in err, err
    code, out, err = await _nango(folder / "github", "dryrun", "issues", gh.connection_id, "--json")
    assert code == 0 and len(json.loads(out)["records"]["GithubIssue"]["save"]) == 2, err
    # what the user names still wins: a flag, then the folder's .env
    dead = f"http://127.0.0.1:{free_port()}"
    code, _, err = await _nango(folder, "deploy", "--server", dead)
    assert code == 1 and f"deploy failed: cannot reach the API at {dead.removeprefix('http://')} " in err, err
    (folder / ".env").write_text(f"NANGO_HOSTPORT={dead}\n")
    code, _, err = await _nango(folder, "dryrun", "issues", gh.connection_id)
    assert code == 1 and err.startswith(f"cannot reach the API at {dead.removeprefix('http://')} "), err
    # a stack of another environment lends neither its key nor its API to `-e other`
    code, _, err = await _nango(folder, "deploy", "-e", "other")
    assert code == 1 and "no secret key" in err, err


async def test_a_service_that_does_not_answer_is_one_line(stack: Stack, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    dead = free_port()
    (folder / ".env").write_text(_dotenv(stack, DATABASE_URL=f"postgresql://postgres:pw@127.0.0.1:{dead}/postgres"))
    expected = f"cannot reach PostgreSQL at 127.0.0.1:{dead} (DATABASE_URL): connection refused\n"
    for args, prefix in ((["admin", "env", "list"], ""), (["admin", "syncs", "list"], ""),
                         (["migrate"], "nango migrate: ")):
        code, out, err = await _nango(folder, *args)
        assert (code, out, err) == (1, "", prefix + expected), args  # one line, never the password, no traceback

    at = address(stack.settings.database_url.get_secret_value(), 5432)
    (folder / ".env").write_text(_dotenv(stack, DATABASE_URL=f"postgresql://nobody@{at}/postgres"))
    code, out, err = await _nango(folder, "admin", "env", "list")  # it answers, and says no
    assert (code, out, err) == (1, "", f'PostgreSQL at {at} (DATABASE_URL) refused the connection: role "nobody" '
                                         "does not exist\n")

    (folder / ".env").write_text(_dotenv(stack, TEMPORAL_ADDRESS=f"127.0.0.1:{dead}"))
    code, out, err = await _nango(folder, "admin", "syncs", "list")
    assert (code, out, err) == (1, "", f"cannot reach Temporal at 127.0.0.1:{dead} (TEMPORAL_ADDRESS): "
                                         "connection refused\n")

    (folder / ".env").write_text(f"NANGO_HOSTPORT=http://127.0.0.1:{dead}\nNANGO_SECRET_KEY=sk\n")
    for args in (["integrations", "list"], ["env", "list"], ["connections", "list"]):
        code, out, err = await _nango(folder, *args)
        assert (code, out, err) == (1, "", f"cannot reach the API at 127.0.0.1:{dead} (--server or "
                                             "NANGO_HOSTPORT): connection refused\n"), args

    (folder / ".env").write_text(_dotenv(stack, DATABASE_POOL_MAX="many"))
    code, _, err = await _nango(folder, "admin", "env", "list")
    assert code == 1 and err.startswith("invalid settings: DATABASE_POOL_MAX: ") and len(err.splitlines()) == 1


async def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    for args in (["--version"], ["version"]):
        code, out, err = await _nango(tmp_path, *args)
        assert (code, out) == (0, f"nango {version('nango-orchestrator')}\n"), err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_server_and_worker_stop_without_a_warning(stack: Stack, tmp_path: Path, sig: signal.Signals) -> None:
    """After serving (an awaited action: the API's pool and its LISTEN connection, the worker's pool and runner),
    each process ends with code 0 and no warning, error or traceback in its output."""
    prefix = f"sd{uuid.uuid4().hex[:6]}-"
    worker = WorkerProcess(stack, prefix, tmp_path, WORKER_TASK_QUEUES="actions")
    api_proc, api_url = await _api_process(stack, tmp_path, prefix)
    try:
        await worker.start()
        gh = await setup_github(stack, issues=1)
        async with NangoClient(api_url, gh.key) as api:  # the processes under test answer this one
            issue = await api.trigger_action("github", gh.connection_id, "create-issue", {"title": "before stop"})
        assert issue["title"] == "before stop"
    finally:
        assert worker.proc is not None
        for proc in (api_proc, worker.proc):
            if proc.returncode is None:
                proc.send_signal(sig)
        codes = [await asyncio.wait_for(p.wait(), 60) for p in (api_proc, worker.proc)]
    assert codes == [0, 0]
    assert _noisy_lines(await asyncio.to_thread(_logs, tmp_path, worker.log)) == []


def _logs(tmp: Path, worker_log: Path) -> dict[str, str]:
    return {log.name: log.read_text() for log in [*tmp.glob("api-*.log"), worker_log]}


def _noisy_lines(texts: dict[str, str]) -> list[str]:
    """Lines of the processes' output that a user would take for a problem."""
    noise = ('"level": "warning"', '"level": "error"', "traceback", "warning:", "unclosed", "exception")
    return [f"{name}: {line}" for name, text in texts.items() for line in text.splitlines()
            if any(word in line.lower() for word in noise)]


async def test_nango_dev_is_found_from_a_subfolder_and_stops_on_ctrl_c_without_a_warning(tmp_root: Path) -> None:
    """A real `nango dev` (its own PostgreSQL and Temporal): `nango admin` and `nango integrations` run from a folder
    below find it through .nango/dev.json; Ctrl-C (SIGINT to its process group, as a terminal sends it) stops it
    with code 0, nothing but info lines while it stops, and dev.json removed."""
    work = tmp_root / f"dev-{uuid.uuid4().hex[:6]}"
    (work / "sub").mkdir(parents=True)
    ports = [str(free_port()) for _ in range(5)]
    log = work / "dev.log"
    out = await asyncio.to_thread(open, log, "wb")
    dev = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", "dev", "--integrations", str(EXAMPLES), "--api-port", ports[0],
        "--temporal-port", ports[1], "--temporal-ui-port", ports[2], "--postgres-port", ports[3],
        "--provider-port", ports[4], cwd=work, stdout=out, stderr=out, start_new_session=True,
        env={k: v for k, v in os.environ.items() if k.upper() not in SETTINGS})
    out.close()
    try:
        async def up() -> None:
            assert "nango dev is up" in log.read_text(), log.read_text()[-2000:]
        await eventually(up, timeout=180)
        code, listed, err = await _nango(work / "sub", "admin", "env", "list", "--json")
        assert code == 0 and [e["name"] for e in json.loads(listed)] == ["dev"], err
        # the commands that talk to the API take its URL and key from there too (no .env, no flag)
        code, listed, err = await _nango(work / "sub", "integrations", "list", "--json")
        assert code == 0 and [i["unique_key"] for i in json.loads(listed)] == ["github"], err
        # and so do nango deploy and nango dryrun, run from an integrations folder below it
        ints = _folder(work / "sub")
        code, _, err = await _nango(ints, "deploy")
        assert code == 0 and "uploading 1 bundle to http://127.0.0.1:" + ports[0] in err, err
        code, out, err = await _nango(ints, "dryrun", "issues", "demo-connection", "--json")
        assert code == 0 and json.loads(out)["ok"] is True, err
    finally:
        if dev.returncode is None:
            os.killpg(dev.pid, signal.SIGINT)
        code = await asyncio.wait_for(dev.wait(), 90)
    text = log.read_text()
    assert code == 0, text[-3000:]
    stopping = text[text.index("stopping ..."):]
    assert _noisy_lines({log.name: stopping}) == []
    assert "stopped." in stopping and not (work / ".nango" / "dev.json").exists()


async def test_a_connection_never_released_does_not_hold_the_shutdown(db_ready: str) -> None:
    """close_pool: once every user has stopped, a connection still out (a task that leaked it) is terminated
    instead of asyncpg waiting for it forever with a warning every minute."""
    from pydantic import SecretStr

    from orchestrator.config.settings import Settings
    from orchestrator.store.pool import close_pool, create_pool

    pool = await create_pool(Settings(database_url=SecretStr(db_ready)))
    leaked = await pool.acquire()
    await asyncio.wait_for(close_pool(pool, timeout_s=0.5), 30)
    assert pool.is_closing()
    with pytest.raises(asyncpg.InterfaceError):  # the leaked connection is gone with the pool
        await leaked.fetchval("SELECT 1")
