"""How every `nango` command finds the platform's settings, and the one line it ends with when a service
does not answer.

Each setting comes from, in order: the process environment; the `.env` of the integrations folder (the
folder holding nango.yaml, found from the current folder upwards, else the current folder: where `nango
deploy` reads its server and keys); a `nango dev` stack running from this folder or a parent (its
`.nango/dev.json`: the database, Temporal and, from `dev-secrets.json`, the encryption key; for the commands
that talk to the API, its URL and secret key); the default.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.cli.common import Target, call_api, fail, read_dotenv, resolve_target, working_folder

if TYPE_CHECKING:
    from orchestrator.client import NangoClient
    from orchestrator.config.settings import Settings

T = TypeVar("T")

DEV_JSON = Path(".nango") / "dev.json"


@dataclass(frozen=True)
class DevStack:
    """A running `nango dev`: its folder (`.nango/`) and what it wrote in dev.json."""

    home: Path
    info: dict[str, Any]

    def settings(self) -> dict[str, str]:
        """What a command needs to reach the stack, by Settings field name."""
        values = {k: str(self.info[k]) for k in ("database_url", "temporal_address") if self.info.get(k)}
        secrets = _read_json(self.home / "dev-secrets.json")
        if secrets.get("encryption_key"):
            values["encryption_key"] = str(secrets["encryption_key"])
        return values


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def running_dev_stack(start: Path | None = None) -> DevStack | None:
    """The nearest `.nango/dev.json` in `start` (default: the current folder) or a parent whose `nango dev` still
    runs; a file left by a stack that was killed is passed over."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        info = _read_json(folder / DEV_JSON)
        if info and _alive(info.get("pid")):
            return DevStack(folder / DEV_JSON.parent, info)
    return None


def dotenv_path() -> Path:
    """The `.env` every command reads: the integrations folder's, else the current folder's."""
    return working_folder() / ".env"


def load_settings(*, dev_stack: bool = True, **overrides: Any) -> Settings:
    """The platform settings of a command (see the module's docstring for the order); a bad value ends the
    command with one line per setting naming it."""
    from pydantic import ValidationError

    from orchestrator.config.settings import Settings

    env_file = dotenv_path()
    dotenv = read_dotenv(env_file)
    given = {name.upper() for name in (*os.environ, *dotenv)}
    values: dict[str, Any] = {}
    if dev_stack and (stack := running_dev_stack()) is not None:
        values = {k: v for k, v in stack.settings().items() if k.upper() not in given}
    try:
        return Settings(_env_file=env_file if dotenv else None, **{**values, **overrides})  # type: ignore[call-arg]
    except ValidationError as exc:
        fail("invalid settings: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper() or 'settings'}: {e['msg']}" for e in exc.errors()))


def target(folder: Path, server: str | None, secret_key: str | None, environment: str | None) -> Target:
    """`resolve_target` (flags, the environment, the folder's .env), completed from a running `nango dev` stack
    when none of them names a server or a key: its API and its environment's key (only for that environment)."""
    given = {name.upper() for name in (*os.environ, *read_dotenv(folder / ".env"))}
    stack = running_dev_stack()
    if stack is not None and environment in (None, stack.info.get("environment")):
        if not secret_key and not any(name.startswith("NANGO_SECRET_KEY") for name in given):
            secret_key = stack.info.get("secret_key") or None
        if not server and "NANGO_HOSTPORT" not in given:
            server = stack.info.get("api_url") or None
    return resolve_target(folder, server, secret_key, environment)


def run(main: Callable[[], Awaitable[T]], *, command: str = "") -> T:
    """`asyncio.run(main())`; an OrchestratorError (a service that does not answer, a refused key...) ends the
    command with its one-line message and exit code 1."""
    from orchestrator.errors import OrchestratorError

    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except OrchestratorError as exc:
        fail(f"{command}: {exc.message}" if command else exc.message)


def call(target: Target, fn: Callable[[NangoClient], Awaitable[T]], *, hint: str = "") -> T:
    """`call_api`: an API that does not answer is one line naming the address and the settings that change it
    (`cannot reach the API at 127.0.0.1:3003 (--server or NANGO_HOSTPORT): connection refused`), then `hint`."""
    return call_api(target, fn, unreachable_hint=hint)
