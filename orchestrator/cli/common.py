"""Helpers shared by the authoring commands: errors, the integrations folder, server settings."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from orchestrator.authoring.checks import ScriptCheckError
    from orchestrator.client import NangoClient
    from orchestrator.config.nango_yaml import NangoConfig

T = TypeVar("T")

DEFAULT_SERVER = "http://127.0.0.1:3003"


# Options every command that talks to a folder or a server shares.
PathOpt = Annotated[Path | None, typer.Option(
    "--path", help="The integrations folder or its nango.yaml (default: found from the current folder upwards).",
    show_default=False)]
ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="API base URL (else NANGO_HOSTPORT from the environment or .env; default "
    "http://127.0.0.1:3003).",
    show_default=False)]
KeyOpt = Annotated[str | None, typer.Option(
    "--secret-key", help="The environment's secret key (else NANGO_SECRET_KEY_<ENVIRONMENT> or NANGO_SECRET_KEY "
    "from the environment or .env).", show_default=False)]
EnvOpt = Annotated[str | None, typer.Option(
    "--environment", "-e", help="Environment name: picks NANGO_SECRET_KEY_<NAME> when set.", show_default=False)]


def fail(message: str) -> NoReturn:
    """A user error: the message on stderr, exit code 1, no traceback."""
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def note(message: str) -> None:
    typer.echo(message, err=True)


def progress(message: str) -> None:
    """A progress line of a long command: on stderr, so stdout stays clean for `--json`."""
    typer.echo(message, err=True)


def print_json(value: Any) -> None:
    """The `--json` output of a command: one document on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def shown(path: Path) -> str:
    """A path as the user wrote it, without a leading './'."""
    return path.as_posix()


@dataclass(frozen=True)
class Folder:
    """The integrations folder (as given, for messages) and its nango.yaml (absent in a code-first folder)."""

    path: Path
    yaml: Path

    @property
    def shown(self) -> str:
        """What messages call the definitions: nango.yaml, or the folder when it has none (code-first)."""
        return shown(self.yaml) if self.yaml.is_file() else shown(self.path)


def is_integrations_folder(path: Path) -> bool:
    """A folder with nango.yaml, or code-first: with a models.py written by hand (not by `nango generate`)."""
    from orchestrator.config.code_first import has_code_models

    return (path / "nango.yaml").is_file() or has_code_models(path)


def find_folder(path: Path) -> Folder:
    """`path` is the integrations folder or its nango.yaml."""
    if path.is_dir():
        folder = Folder(path, path / "nango.yaml")
    elif path.is_file():
        folder = Folder(path.parent, path)
    else:
        fail(f"no such file or folder: {shown(path)}")
    if not folder.yaml.is_file() and not is_integrations_folder(folder.path):
        fail(f"no nango.yaml in {shown(folder.path.resolve())} (create one with `nango init`)")
    return folder


def discover_folder(path: Path | None) -> Folder:
    """`--path` when given, else the folder holding nango.yaml: the current folder or one of its parents."""
    if path is not None:
        return find_folder(path)
    found = look_up()
    if found is None:
        fail(f"no nango.yaml in {Path.cwd()} or any parent folder; pass --path or run `nango init`")
    return found


def working_folder() -> Path:
    """Where `.env` is read from for commands that need no integrations folder: the one found upwards, else here."""
    found = look_up()
    return found.path if found is not None else Path(".")


def look_up() -> Folder | None:
    """The integrations folder (nango.yaml or code-first), the current folder or the nearest parent; None when
    there is none."""
    here = Path.cwd()
    for candidate in (here, *here.parents):
        if is_integrations_folder(candidate):
            if candidate == here:  # shown as the user would write it: nango.yaml, not /abs/path/nango.yaml
                return Folder(Path("."), Path("nango.yaml"))
            return Folder(candidate, candidate / "nango.yaml")
    return None


def folder_arg(positional: Path | None, option: Path | None) -> Folder:
    """The folder of a command that takes it both as an (optional, older) argument and as `--path`."""
    if positional is not None and option is not None and positional != option:
        fail(f"two integrations folders given ({shown(positional)} and --path {shown(option)}): pass one")
    return discover_folder(positional if positional is not None else option)


def load(folder: Folder, *, warnings: bool = True) -> NangoConfig:
    """Parse and validate the definitions, nango.yaml and code-first; every problem at once, exit 1 on any."""
    from orchestrator.config.nango_yaml import ConfigError
    from orchestrator.config.project import load_project

    try:
        config = load_project(folder.path, yaml_file=folder.yaml)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {shown(Path(exc.filename)) if exc.filename else folder.shown}: {exc.strerror or exc}")
    if warnings:
        for issue in config.warnings:
            note(f"{issue.file}:{issue.line}:{issue.col}: warning: {issue.message}")
    return config


@contextmanager
def writing(what: Path) -> Iterator[None]:
    """File system errors while writing become a user error naming the file."""
    try:
        yield
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else what
        fail(f"cannot write {shown(where)}: {exc.strerror or exc}")


def fail_on_problems(folder: Folder, exc: ScriptCheckError) -> NoReturn:
    fail(exc.render(folder.path))


# --------------------------------------------------------------------------- server settings


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, `export ` and quotes allowed); {} when absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return {}
    except OSError as exc:
        fail(f"cannot read {shown(path)}: {exc.strerror or exc}")
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class Target:
    server: str
    secret_key: str
    environment: str | None


def resolve_target(folder: Path, server: str | None, secret_key: str | None, environment: str | None) -> Target:
    """Where to talk to and with which key. Each setting comes from, in order: the flag, the process
    environment, the folder's `.env`. With `--environment NAME`, `NANGO_SECRET_KEY_NAME` (upper case, from
    either place) is preferred over `NANGO_SECRET_KEY`."""
    dotenv = read_dotenv(folder / ".env")
    sources = (os.environ, dotenv)
    names = ["NANGO_SECRET_KEY"]
    if environment:
        names.insert(0, "NANGO_SECRET_KEY_" + environment.upper().replace("-", "_"))
    # the environment's own key wins wherever it is set (a generic NANGO_SECRET_KEY exported in the shell
    # must not send a `--environment prod` deploy to another environment)
    key = secret_key or next((src[n] for n in names for src in sources if src.get(n)), "")
    if not key:
        fail(f"no secret key: pass --secret-key, or set {' or '.join(names)} in the environment or in "
             f"{shown(folder / '.env')}")
    url = server or next((src["NANGO_HOSTPORT"] for src in sources if src.get("NANGO_HOSTPORT")), DEFAULT_SERVER)
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return Target(url.rstrip("/"), key, environment)


API_SETTING = "--server or NANGO_HOSTPORT"


def api_unreachable(server: str, exc: Exception) -> str:
    """An API that does not answer as one line in the form the other services' failures take
    (`startup.unreachable`): `cannot reach the API at 127.0.0.1:3003 (--server or NANGO_HOSTPORT): connection
    refused`."""
    import aiohttp

    from orchestrator.startup import address, unreachable

    where = address(server, 443 if server.startswith("https://") else 80)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"the API at {where} ({API_SETTING}) closed the connection"
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    return unreachable("the API", where, API_SETTING, cause).message


def call_api(target: Target, fn: Callable[[NangoClient], Awaitable[T]], *, unreachable_hint: str = "") -> T:
    """Run `fn` against the target's API; its errors end the command with what the server said, an API that
    does not answer with `api_unreachable`'s line."""
    import aiohttp

    from orchestrator.client import ApiError, NangoClient

    async def run() -> T:
        async with NangoClient(target.server, target.secret_key) as api:
            return await fn(api)
    try:
        return asyncio.run(run())
    except ApiError as exc:
        if exc.status == 401:
            fail(f"{target.server} refused the secret key ({exc.message})")
        fail(f"{exc.status} {exc.code}: {exc.message}")
    except aiohttp.ClientConnectionError as exc:
        fail(api_unreachable(target.server, exc) + unreachable_hint)
