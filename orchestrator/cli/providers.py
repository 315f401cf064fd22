"""`nango providers`: the provider catalog and the environment's custom providers.

`list` and `show` ask the server (built-ins plus the environment's custom providers, resolved like
`nango deploy`: flags, process environment, the integrations folder's `.env`); with `--local` they read
the built-in catalog and the integrations folder's `providers.yaml` without a server. The integrations
folder is `--path`, else found from the current folder upwards; outside one, only flags and the
process environment apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import (
    EnvOpt,
    KeyOpt,
    ServerOpt,
    discover_folder,
    fail,
    working_folder,
)
from orchestrator.cli.settings_discovery import call, target

if TYPE_CHECKING:
    from orchestrator.client import NangoClient

providers_app = typer.Typer(help="Providers: the built-in catalog and custom providers (list, show).",
                            no_args_is_help=True)

FOLDER_FILE = "providers.yaml"
LocalOpt = Annotated[bool, typer.Option("--local", help="Built-in catalog and the folder's providers.yaml only; "
                                        "no server.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
PathOpt = Annotated[Path | None, typer.Option(
    "--path", help="The integrations folder (default: found from the current folder upwards, if any).",
    show_default=False)]


def _folder(path: Path | None) -> Path:
    """The integrations folder for providers.yaml and .env: --path, the one found upwards, else the current one."""
    return discover_folder(path).path if path is not None else working_folder()


def read_folder_providers(folder: Path) -> str | None:
    """The text of the integrations folder's providers.yaml (validated here, so a typo fails before the
    upload), or None when there is none."""
    from orchestrator.errors import InvalidInputError
    from orchestrator.providers.catalog import load_providers_file

    path = folder / FOLDER_FILE
    if not path.is_file():
        return None
    text = path.read_text()
    try:
        load_providers_file(text, source=str(path))
    except InvalidInputError as exc:
        fail(exc.message)
    return text


def _local(folder: Path) -> list[dict[str, Any]]:
    from orchestrator.providers.catalog import builtin_providers, load_providers_file

    rows = {name: {**p.public(), "source": "builtin"} for name, p in builtin_providers().items()}
    text = read_folder_providers(folder)
    if text:
        rows.update({name: {**p.public(), "source": "local"} for name, p in load_providers_file(text).items()})
    return [rows[k] for k in sorted(rows)]


def _remote(folder: Path, path: str, server: str | None, secret_key: str | None, environment: str | None) -> Any:
    async def get(api: NangoClient) -> Any:
        return (await api.request("GET", path))["data"]
    return call(target(folder, server, secret_key, environment), get, hint=" (use --local for the built-in catalog)")


@providers_app.command("list")
def list_(
    local: LocalOpt = False, as_json: JsonOpt = False,
    environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None, path: PathOpt = None,
) -> None:
    """Every provider: name, auth mode, base URL, and where it comes from (builtin, custom, local)."""
    folder = _folder(path)
    rows = _local(folder) if local else _remote(folder, "/providers", server, secret_key, environment)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['auth_mode']:<9}  {r['source']:<8}  {r['base_url']}")


@providers_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The provider's name.")],
    local: LocalOpt = False, as_json: JsonOpt = False,
    environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None, path: PathOpt = None,
) -> None:
    """One provider's fields: auth, URLs, connection config, pagination, rate limits, webhook signature."""
    folder = _folder(path)
    if local:
        found = next((r for r in _local(folder) if r["name"] == name), None)
        if found is None:
            fail(f"no provider '{name}' in the built-in catalog or {(folder / FOLDER_FILE).as_posix()}")
    else:
        found = _remote(folder, f"/providers/{name}", server, secret_key, environment)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for key, value in found.items():
        if value in (None, {}, []):
            continue
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for sub, inner in value.items():
                if inner is not None:
                    typer.echo(f"  {sub}: {inner}")
        elif isinstance(value, list):
            typer.echo(f"{key}: {', '.join(map(str, value))}")
        else:
            typer.echo(f"{key}: {value}")
