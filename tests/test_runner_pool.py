"""The runner's child lifecycle: results returned at once, children torn down, warm pool hands out ready ones.

The real sandbox (bubblewrap + seccomp), real child processes, checked through /proc; the worker's start-up
(its pool ready before it polls, shown by its health endpoint) runs against the suite's real stack.
"""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orchestrator import worker as worker_module
from orchestrator.devstack.processes import free_port
from orchestrator.runner.host import Child, Limits, Runner, RunSpec, run_script
from orchestrator.worker import run_worker, warm_pool_ready
from tests.conftest import Stack, eventually

CHATTY = """
import sys

async def run_action(nango, inp):
    for i in range(inp["lines"]):
        print(f"out {i}")
        if i % 50 == 0:
            nango.log(f"log {i}")
    print("to stderr", file=sys.stderr)
    print("no newline at the end", end="")
    return {"done": inp["lines"]}
"""

CLOSES_STDOUT = """
import os

async def run_action(nango, inp):
    os.close(1)
    return {"ok": True}
"""

NOOP = """
async def run_action(nango, inp):
    return {"n": inp.get("n")}
"""


class Handler:
    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        return {}

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        self.logs.append((level, message))


class RecordingRunner(Runner):
    """The real runner, remembering every child it started (to check each one is gone afterwards)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: list[Child] = []
        self.handed: list[Child] = []
        self.booting_handed: list[Child] = []  # warm children handed out before they said `ready`

    async def spawn(self, limits: Limits) -> Child:
        child = await super().spawn(limits)
        self.started.append(child)
        return child

    async def acquire(self, limits: Limits, **options: Any) -> Child:
        known = set(map(id, self.started))
        child = await super().acquire(limits, **options)
        if id(child) in known and not child.ready:  # from the pool, yet still booting
            self.booting_handed.append(child)
        self.handed.append(child)
        return child


async def recording_runner(warm: int) -> RecordingRunner:
    base = await Runner.create(warm=warm)
    return RecordingRunner(base.sandbox, warm=warm)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    for name, text in (("chatty.py", CHATTY), ("closes.py", CLOSES_STDOUT), ("noop.py", NOOP)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def spec(bundle: Path, module: str, **inp: Any) -> RunSpec:
    return RunSpec("action", bundle, module, 30, context={"connection_id": "c", "provider_config_key": "p",
                                                          "input": inp})


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent pid, start time) of a process, None when it no longer exists (reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid`, with its start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            children.setdefault(info[1], []).append(int(entry.name))
            starts[int(entry.name)] = info[2]
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            found[kid] = starts[kid]
            todo.append(kid)
    return found


def still_there(processes: dict[int, str]) -> list[int]:
    """The processes (zombies included) that still exist with the same start time."""
    return [pid for pid, start in processes.items() if (info := _stat(pid)) is not None and info[2] == start]


async def all_gone(processes: dict[int, str]) -> None:
    """The sandbox's inner processes are killed with the child; their own parent (or init) reaps them."""
    async def check() -> None:
        assert still_there(processes) == []
    await eventually(check, timeout=10, interval=0.02)


def ours_reaped(runner: RecordingRunner) -> None:
    """Every child the runner started is reaped by the runner itself: no zombie of ours is left."""
    for child in runner.started:
        assert child.proc.returncode is not None
        info = _stat(child.proc.pid)
        assert info is None or info[1] != os.getpid(), f"child {child.proc.pid} left as {info}"


async def test_outcome_comes_back_and_the_child_is_gone_after_close(bundle: Path) -> None:
    runner = await recording_runner(warm=0)
    tree: dict[int, str] = {}
    try:
        outcome = await run_script(spec(bundle, "noop.py", n=7), Handler(), runner=runner)
        assert outcome.ok and outcome.output == {"n": 7}, outcome.error
        (child,) = runner.handed
        tree = {child.proc.pid: (_stat(child.proc.pid) or ("", 0, ""))[2], **descendants(child.proc.pid)}
    finally:
        await runner.close()
    ours_reaped(runner)
    await all_gone(tree)


async def test_a_warm_child_killed_while_idle_is_never_handed_out(bundle: Path) -> None:
    runner = await recording_runner(warm=1)
    runner.prewarm(Limits())
    try:
        async def one_ready() -> None:
            assert runner.ready_count(Limits()) == 1
        await eventually(one_ready, timeout=30, interval=0.05)
        (victim,) = runner.started
        assert victim.ready
        inner = descendants(victim.proc.pid)
        for pid in [victim.proc.pid, *inner]:  # the interpreter and the bwrap processes around it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        async def dead() -> None:
            info = _stat(victim.proc.pid)
            assert info is None or info[0] == "Z"
        await eventually(dead, timeout=10, interval=0.02)
        await all_gone(inner)  # the interpreter holding the socket has exited too
        handler = Handler()
        outcome = await run_script(spec(bundle, "noop.py", n=1), handler, runner=runner)
        assert outcome.ok and outcome.output == {"n": 1}, (outcome.error, handler.logs)
        assert runner.handed[-1] is not victim
        await asyncio.wait_for(runner.until_ready(Limits()), 60)  # and the pool is whole again
        assert runner.ready_count(Limits()) == 1
    finally:
        await runner.close()
    ours_reaped(runner)


async def test_a_warm_child_is_ready_when_handed_out(bundle: Path) -> None:
    runner = await recording_runner(warm=2)
    runner.prewarm(Limits())
    try:
        for n in range(6):  # back to back: whatever the pool holds at each moment, never a booting child
            outcome = await run_script(spec(bundle, "noop.py", n=n), Handler(), runner=runner)
            assert outcome.ok and outcome.output == {"n": n}, outcome.error
        assert runner.booting_handed == []
    finally:
        await runner.close()


async def test_many_sequential_runs_leave_no_process_or_zombie(bundle: Path) -> None:
    runner = await recording_runner(warm=2)
    runner.prewarm(Limits())
    trees: dict[int, str] = {}
    try:
        for n in range(15):
            outcome = await run_script(spec(bundle, "noop.py", n=n), Handler(), runner=runner)
            assert outcome.ok, outcome.error
            child = runner.handed[-1]
            trees[child.proc.pid] = (_stat(child.proc.pid) or ("", 0, ""))[2]
            trees.update(descendants(child.proc.pid))

        async def only_the_pool_is_left() -> None:
            used = {c.proc.pid: s for c in runner.handed if (s := trees.get(c.proc.pid))}
            assert still_there(used) == []  # every used child is reaped while the runner keeps going
        await eventually(only_the_pool_is_left, timeout=20, interval=0.05)
    finally:
        await runner.close()
    ours_reaped(runner)
    await all_gone(trees)


async def test_a_runs_replacement_comes_after_it_and_none_starts_once_the_runner_is_closed(bundle: Path) -> None:
    runner = await recording_runner(warm=2)
    runner.prewarm(Limits())
    try:
        await asyncio.wait_for(runner.until_ready(Limits(), 2), 60)
        outcome = await run_script(spec(bundle, "noop.py", n=1), Handler(), runner=runner)
        assert outcome.ok, outcome.error
        await asyncio.wait_for(runner.until_ready(Limits(), 2), 60)  # the pool is whole again
        started = len(runner.started)
        outcome = await run_script(spec(bundle, "noop.py", n=2), Handler(), runner=runner)
        assert outcome.ok, outcome.error
    finally:
        await runner.close()  # before its replacement was due
    await asyncio.sleep(0.2)
    assert len(runner.started) == started  # nothing started after close
    ours_reaped(runner)


@pytest.mark.parametrize("warm", [0, 1])
async def test_output_written_just_before_the_result_has_all_arrived_when_it_returns(bundle: Path,
                                                                                     warm: int) -> None:
    runner = await recording_runner(warm=warm)
    runner.prewarm(Limits())
    try:
        handler = Handler()
        outcome = await run_script(spec(bundle, "chatty.py", lines=300), handler, runner=runner)
        assert outcome.ok and outcome.output == {"done": 300}, outcome.error
        got = list(handler.logs)  # as they were when run_script returned
    finally:
        await runner.close()
    stdout = [m for level, m in got if level == "info" and m.startswith("out ")]
    assert stdout == [f"out {i}" for i in range(300)]
    assert ("warn", "to stderr") in got
    assert ("info", "no newline at the end") in got
    assert [m for _, m in got if m.startswith("log ")] == [f"log {i}" for i in range(0, 300, 50)]
    assert not any("nango-end" in m for _, m in got)  # the end marks are not log lines
    assert handler.logs == got  # nothing arrives after the run returned


async def test_a_script_that_closes_its_stdout_still_returns_its_result(bundle: Path) -> None:
    runner = await recording_runner(warm=0)
    try:
        outcome = await run_script(spec(bundle, "closes.py"), Handler(), runner=runner)
        assert outcome.ok and outcome.output == {"ok": True}, outcome.error
    finally:
        await runner.close()


async def test_dry_run_without_a_runner_leaves_nothing_behind(bundle: Path) -> None:
    before = descendants(os.getpid())
    outcome = await run_script(spec(bundle, "noop.py", n=3), Handler())
    assert outcome.ok and outcome.output == {"n": 3}, outcome.error
    left = {pid: s for pid, s in descendants(os.getpid()).items() if pid not in before}
    await all_gone(left)


async def test_a_worker_polls_only_once_its_warm_pool_is_ready_and_its_health_says_so(stack: Stack) -> None:
    port = free_port()
    settings = stack.settings.model_copy(update={
        "task_queue_prefix": f"pool-{os.getpid()}-", "api_host": "127.0.0.1", "worker_health_port": port,
        "runner_warm_children": 3})
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop, client=stack.client))
    seen: list[tuple[int, dict[str, Any]]] = []
    try:
        async def serving() -> None:
            try:
                async with aiohttp.ClientSession() as session, session.get(
                        f"http://127.0.0.1:{port}/health/ready", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    seen.append((resp.status, await resp.json()))
            except aiohttp.ClientConnectionError:
                pass  # the health server is not up yet
            assert seen and seen[-1][0] == 200
        await eventually(serving, timeout=60, interval=0.02)
        # the first answer that says `serving` already finds the whole pool ready: the worker waited for it
        assert seen[-1][1] == {"status": "ok", "phase": "serving", "warm_children": {"ready": 3, "size": 3}}
        assert all(body["phase"] == "starting" and "warm_children" not in body for _, body in seen[:-1])
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)


class NeverStarts(Runner):
    """A sandbox whose children cannot be started (the launcher is missing, the pid limit is reached)."""

    async def spawn(self, limits: Limits) -> Child:
        await asyncio.sleep(0.05)
        raise OSError("cannot start a child here")


class _Warnings:
    """Stands in for the worker module's logger (structlog.testing.capture_logs cannot reach a logger that an
    earlier test's configuration already cached)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


async def test_a_warm_pool_that_never_gets_ready_delays_the_start_only_so_long(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = await Runner.create(warm=2)
    runner = NeverStarts(base.sandbox, warm=2)
    warnings = _Warnings()
    monkeypatch.setattr(worker_module, "log", warnings)
    try:
        ready = await asyncio.wait_for(warm_pool_ready(runner, Limits(), asyncio.Event(), timeout_s=0.5), 10)
        assert not ready
        assert [{"event": "warm_pool_not_ready", "ready": 0, "size": 2}.items() <= line.items()
                for line in warnings.lines] == [True]
    finally:
        await runner.close()
