"""`nango integrations ...` and `nango connections ...`: the objects a user manages, through the API.

Resolved like `nango deploy` (flags, the process environment, the integrations folder's `.env`), then a running
`nango dev` stack (cli/settings_discovery.target). A connection's credentials come from flags or a JSON file
(`--file`, Nango's credential shapes); an OAuth integration without credentials given prints a connect URL to
open in a browser instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from orchestrator.cli.common import EnvOpt, KeyOpt, ServerOpt, fail, working_folder
from orchestrator.cli.settings_discovery import call, target

if TYPE_CHECKING:
    from orchestrator.client import NangoClient

T = TypeVar("T")

integrations_app = typer.Typer(help="Integrations of the environment: list, show, create, delete.",
                               no_args_is_help=True)
connections_app = typer.Typer(help="Connections of the environment: list, show, create, delete.",
                              no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _call(server: str | None, secret_key: str | None, environment: str | None,
          fn: Callable[[NangoClient], Awaitable[T]]) -> T:
    return call(target(working_folder(), server, secret_key, environment), fn)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{what} '{item}' must be key=value")
        out[key] = value
    return out


def _echo(value: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(value, indent=2, default=str))
        return
    for key, inner in value.items():
        if inner in (None, {}, []):
            continue
        typer.echo(f"{key}: {json.dumps(inner) if isinstance(inner, dict | list) else inner}")


# ---- integrations ---------------------------------------------------------------------------------------------

@integrations_app.command("list")
def integrations_list(as_json: JsonOpt = False, environment: EnvOpt = None, server: ServerOpt = None,
                      secret_key: KeyOpt = None) -> None:
    """Every integration: its key, provider and display name."""
    rows = _call(server, secret_key, environment, lambda api: api.list_integrations())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["unique_key"]) for r in rows), default=4)
    for r in rows:
        typer.echo(f"{r['unique_key']:<{width}}  {r['provider']:<16}  {r.get('display_name') or ''}")


@integrations_app.command("show")
def integrations_show(key: Annotated[str, typer.Argument(help="The integration's unique key.")],
                      as_json: JsonOpt = False, environment: EnvOpt = None, server: ServerOpt = None,
                      secret_key: KeyOpt = None) -> None:
    """One integration: provider, webhook URL and routing, OAuth client id (never its secret)."""
    found = _call(server, secret_key, environment,
                  lambda api: api.get_integration(key, include=["webhook", "credentials"]))
    creds = found.get("credentials")
    if isinstance(creds, dict):
        found["credentials"] = {k: ("********" if k == "client_secret" and v else v) for k, v in creds.items()}
    _echo(found, as_json)


@integrations_app.command("create")
def integrations_create(
    key: Annotated[str, typer.Argument(help="The integration's unique key (provider config key).")],
    provider: Annotated[str, typer.Option("--provider", "-p", help="A provider of `nango providers list`.")],
    display_name: Annotated[str | None, typer.Option(help="Shown in the dashboard.")] = None,
    client_id: Annotated[str | None, typer.Option(help="OAuth client id.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="OAuth client secret.", envvar="NANGO_CLIENT_SECRET",
                                                      show_envvar=True)] = None,
    scopes: Annotated[str | None, typer.Option(help="OAuth scopes, comma separated.")] = None,
    webhook_secret: Annotated[str | None, typer.Option(help="The provider's webhook signing secret.")] = None,
    as_json: JsonOpt = False, environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
) -> None:
    """Create an integration of a provider (with its OAuth app, for OAuth providers)."""
    made = _call(server, secret_key, environment, lambda api: api.create_integration(
        key, provider, display_name=display_name, client_id=client_id, client_secret=client_secret,
        scopes=scopes, webhook_secret=webhook_secret))
    if as_json:
        typer.echo(json.dumps(made, indent=2))
    else:
        typer.echo(f"created integration {made['unique_key']} ({made['provider']})")


@integrations_app.command("delete")
def integrations_delete(key: Annotated[str, typer.Argument(help="The integration's unique key.")],
                        yes: YesOpt = False, environment: EnvOpt = None, server: ServerOpt = None,
                        secret_key: KeyOpt = None) -> None:
    """Delete an integration with its connections, their records and schedules."""
    if not yes and not typer.confirm(f"Delete integration '{key}' with its connections and records?"):
        fail("nothing deleted")
    _call(server, secret_key, environment, lambda api: api.delete_integration(key))
    typer.echo(f"deleted integration {key}")


# ---- connections ----------------------------------------------------------------------------------------------

@connections_app.command("list")
def connections_list(
    integration: Annotated[str | None, typer.Option("--integration", "-i", help="Only this integration.")] = None,
    end_user: Annotated[str | None, typer.Option("--end-user", help="Only this end user's.")] = None,
    as_json: JsonOpt = False, environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
) -> None:
    """Every connection: integration, id, end user, and an auth error when its token refresh was refused."""
    async def fetch(api: NangoClient) -> Any:
        params = {k: v for k, v in (("integrationId", integration), ("endUserId", end_user)) if v}
        return (await api.request("GET", "/connections", params=params))["connections"]
    rows = _call(server, secret_key, environment, fetch)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        user = (r.get("end_user") or {}).get("id")
        auth = "  AUTH ERROR: " + r["errors"][0].get("message", "") if r.get("errors") else ""
        typer.echo(f"{r['provider_config_key']}/{r['connection_id']}" + (f"  end user {user}" if user else "") + auth)


@connections_app.command("show")
def connections_show(
    integration: Annotated[str, typer.Argument(help="The integration's unique key.")],
    connection_id: Annotated[str, typer.Argument(help="The connection id.")],
    show_credentials: Annotated[bool, typer.Option("--credentials", help="Print the credentials too.")] = False,
    as_json: JsonOpt = False, environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
) -> None:
    """One connection: config, metadata, end user, tags, and its credentials' type and expiry."""
    found = _call(server, secret_key, environment, lambda api: api.get_connection(integration, connection_id))
    creds = found.get("credentials") or {}
    if not show_credentials:
        found["credentials"] = {k: v for k, v in creds.items() if k in ("type", "expires_at")}
    _echo(found, as_json)


def _credentials(api_key: str | None, username: str | None, password: str | None, access_token: str | None,
                 refresh_token: str | None, file: Path | None, client_credentials: bool,
                 client_id: str | None, client_secret: str | None) -> dict[str, Any] | None:
    given = [name for name, v in (("--api-key", api_key), ("--username", username), ("--access-token", access_token),
                                  ("--file", file), ("--client-credentials", client_credentials)) if v]
    if len(given) > 1:
        fail(f"give one kind of credentials, not {' and '.join(given)}")
    if file is not None:
        try:
            creds = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            fail(f"{file}: not a JSON credentials file ({exc})")
        if not isinstance(creds, dict) or not creds.get("type"):
            fail(f"{file}: expected an object with a type, e.g. {{\"type\": \"API_KEY\", \"apiKey\": \"...\"}}")
        return dict(creds)
    if client_credentials:  # the platform mints the token; the integration's OAuth app unless given here
        return {"type": "OAUTH2_CC", **({"client_id": client_id} if client_id else {}),
                **({"client_secret": client_secret} if client_secret else {})}
    if client_id or client_secret:
        fail("--client-id and --client-secret go with --client-credentials")
    if api_key:
        return {"type": "API_KEY", "apiKey": api_key}
    if username:
        return {"type": "BASIC", "username": username, "password": password or ""}
    if access_token:
        return {"type": "OAUTH2", "access_token": access_token,
                **({"refresh_token": refresh_token} if refresh_token else {})}
    if password or refresh_token:
        fail("--password goes with --username, --refresh-token with --access-token")
    return None


@connections_app.command("create")
def connections_create(
    integration: Annotated[str, typer.Argument(help="The integration's unique key.")],
    connection_id: Annotated[str | None, typer.Argument(help="The connection id (generated for a connect URL "
                                                              "when omitted).")] = None,
    api_key: Annotated[str | None, typer.Option(help="API_KEY credentials.", envvar="NANGO_CONNECTION_API_KEY",
                                                show_envvar=True)] = None,
    username: Annotated[str | None, typer.Option(help="BASIC credentials: the user name.")] = None,
    password: Annotated[str | None, typer.Option(help="BASIC credentials: the password.",
                                                 envvar="NANGO_CONNECTION_PASSWORD", show_envvar=True)] = None,
    access_token: Annotated[str | None, typer.Option(help="OAUTH2 credentials you already hold.")] = None,
    refresh_token: Annotated[str | None, typer.Option(help="With --access-token.")] = None,
    file: Annotated[Path | None, typer.Option(help="Credentials as JSON in Nango's shapes.")] = None,
    client_credentials: Annotated[bool, typer.Option("--client-credentials", help="OAUTH2_CC: the platform mints "
                                                     "the token (with the integration's OAuth app unless "
                                                     "--client-id/--client-secret).")] = False,
    client_id: Annotated[str | None, typer.Option(help="With --client-credentials.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="With --client-credentials.",
                                                      envvar="NANGO_CONNECTION_CLIENT_SECRET",
                                                      show_envvar=True)] = None,
    config: Annotated[list[str] | None, typer.Option("--config", help="connection_config key=value "
                                                     "(repeatable).")] = None,
    metadata: Annotated[str | None, typer.Option(help="Metadata as a JSON object.")] = None,
    end_user: Annotated[str | None, typer.Option("--end-user", help="The end user's id.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value (repeatable).")] = None,
    as_json: JsonOpt = False, environment: EnvOpt = None, server: ServerOpt = None, secret_key: KeyOpt = None,
) -> None:
    """Create a connection from credentials; for an OAuth integration without them, print a connect URL."""
    creds = _credentials(api_key, username, password, access_token, refresh_token, file, client_credentials,
                         client_id, client_secret)
    try:
        meta = json.loads(metadata) if metadata else {}
    except ValueError as exc:
        fail(f"--metadata is not JSON: {exc}")
    if not isinstance(meta, dict):
        fail("--metadata must be a JSON object")
    connection_config, tags = _pairs(config, "--config"), _pairs(tag, "--tag")
    extra: dict[str, Any] = {k: v for k, v in (("end_user", {"id": end_user} if end_user else None),
                                               ("tags", tags or None)) if v}

    async def create(api: NangoClient) -> dict[str, Any]:
        if creds is None:
            body = {"allowed_integrations": [integration], "connection_config": connection_config,
                    "metadata": meta, **({"connection_id": connection_id} if connection_id else {}), **extra}
            return {"connect": (await api.request("POST", "/connect/sessions", json=body))["data"]}
        if not connection_id:
            fail("a connection id is needed with credentials")
        return dict(await api.request("POST", "/connections", json={
            "provider_config_key": integration, "connection_id": connection_id, "credentials": creds,
            "connection_config": connection_config, "metadata": meta, **extra}))
    made = _call(server, secret_key, environment, create)
    if as_json:
        typer.echo(json.dumps(made, indent=2))
    elif "connect" in made:
        typer.echo(f"open this URL in a browser to connect (valid until {made['connect']['expires_at']}):\n"
                   f"{made['connect']['connect_url']}")
    else:
        typer.echo(f"created connection {integration}/{made['connection_id']}")


@connections_app.command("delete")
def connections_delete(integration: Annotated[str, typer.Argument(help="The integration's unique key.")],
                       connection_id: Annotated[str, typer.Argument(help="The connection id.")],
                       yes: YesOpt = False, environment: EnvOpt = None, server: ServerOpt = None,
                       secret_key: KeyOpt = None) -> None:
    """Delete a connection with its records and schedules."""
    if not yes and not typer.confirm(f"Delete connection '{integration}/{connection_id}' and its records?"):
        fail("nothing deleted")
    _call(server, secret_key, environment, lambda api: api.delete_connection(integration, connection_id))
    typer.echo(f"deleted connection {integration}/{connection_id}")
