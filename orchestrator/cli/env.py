"""`nango env`: the environment variables scripts read with `nango.get_environment_variables()`.

Through the API (`GET/POST /environment-variables`, POST replacing the whole set as in Nango), with
the server and secret key resolved like `nango deploy`'s: flags, then the process environment, then
the integrations folder's `.env` (found from the current folder upwards, else the current folder's).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

from orchestrator.cli.common import EnvOpt, KeyOpt, ServerOpt, Target, fail, working_folder
from orchestrator.cli.settings_discovery import call, target

env_app = typer.Typer(help="Environment variables of an environment (set, list, unset).", no_args_is_help=True)


def _target(server: str | None, secret_key: str | None, environment: str | None) -> Target:
    return target(working_folder(), server, secret_key, environment)


def _call(target: Target, method: str, body: Any = None) -> Any:
    return call(target, lambda api: api.request(method, "/environment-variables", json=body))


def _current(target: Target) -> dict[str, str]:
    rows = _call(target, "GET") or []
    return {str(r["name"]): str(r["value"]) for r in rows}


def _replace(target: Target, variables: dict[str, str]) -> None:
    _call(target, "POST", {"variables": [{"name": k, "value": v} for k, v in variables.items()]})


@env_app.command("set")
def set_(
    assignments: Annotated[list[str], typer.Argument(help="KEY=VALUE pairs (VALUE may be empty or contain '=').")],
    environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
) -> None:
    """Set one or more variables; the others stay as they are."""
    from orchestrator.control.environments import VARIABLE_NAME  # the rule the API applies

    wanted: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            fail(f"expected KEY=VALUE, got {item!r}")
        if not re.fullmatch(VARIABLE_NAME, name):
            fail(f"invalid variable name {name!r}: letters, digits, '_', '.', '-', not starting with a digit")
        wanted[name] = value
    target = _target(server, secret_key, environment)
    variables = _current(target)
    variables.update(wanted)
    _replace(target, variables)
    typer.echo(f"set {', '.join(wanted)}")


@env_app.command("unset")
def unset(
    names: Annotated[list[str], typer.Argument(help="Variable names.")],
    environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
) -> None:
    """Remove one or more variables."""
    target = _target(server, secret_key, environment)
    variables = _current(target)
    missing = [n for n in names if n not in variables]
    if missing:
        fail(f"not set: {', '.join(missing)} (set: {', '.join(sorted(variables)) or 'none'})")
    for name in names:
        variables.pop(name)
    _replace(target, variables)
    typer.echo(f"unset {', '.join(names)}")


@env_app.command("list")
def list_(
    environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
    reveal: Annotated[bool, typer.Option("--reveal", help="Show the values (masked otherwise).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (values included).")] = False,
) -> None:
    """The variables, by name."""
    variables = _current(_target(server, secret_key, environment))
    if as_json:
        typer.echo(json.dumps([{"name": k, "value": v} for k, v in sorted(variables.items())], indent=2))
        return
    if not variables:
        typer.echo("no environment variables")
    for name, value in sorted(variables.items()):
        typer.echo(f"{name}={value if reveal else _mask(value)}")


def _mask(value: str) -> str:
    return "" if not value else "********"
