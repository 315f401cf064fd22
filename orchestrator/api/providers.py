"""Providers: the built-in catalog plus the environment's custom providers (internal or unlisted APIs).

`GET /providers` lists both (a custom provider shadows a built-in one of the same name),
`GET /providers/{name}` shows one, `POST /providers` creates or replaces a custom provider (the
catalog's fields, validated by the same schema), `DELETE /providers/{name}` removes one that no
integration uses.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.providers import custom as store
from orchestrator.providers.catalog import DECLARED, Provider, builtin_providers, operator_provider_names
from orchestrator.providers.custom import find_provider
from orchestrator.store import integrations as integrations_repo

routes = web.RouteTableDef()


class ProviderOut(Provider):
    # builtin: the shipped catalog; operator: the operator's PROVIDERS_FILE; custom: this environment's own
    source: Literal["builtin", "operator", "custom"]


class ProviderEnvelope(BaseModel):
    data: ProviderOut


class ProviderList(BaseModel):
    data: list[ProviderOut]


def _out(provider: Provider, source: str) -> dict[str, object]:
    if source == "builtin" and provider.name in operator_provider_names():
        source = "operator"
    return {**provider.public(), "source": source}


@routes.get("/providers")
async def list_providers(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        custom = {p.name: p for p in await store.list_all(conn, environment(request).id)}
    merged = {name: _out(p, "builtin") for name, p in builtin_providers().items()}
    merged.update({name: _out(p, "custom") for name, p in custom.items()})
    only = request.query.get("source")
    rows = [merged[k] for k in sorted(merged) if not only or merged[k]["source"] == only]
    return json_response({"data": rows})


@routes.get("/providers/{name}")
async def get_provider(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    async with request.app[PLATFORM].pool.acquire() as conn:
        custom = await store.get(conn, environment(request).id, name)
    if custom is not None:
        return json_response({"data": _out(custom, "custom")})
    builtin = builtin_providers().get(name)
    if builtin is None:
        raise_error(404, "unknown_provider", f"no provider '{name}' (built-in or custom in this environment)")
    return json_response({"data": _out(builtin, "builtin")})


@routes.post("/providers")
async def create_provider(request: web.Request) -> web.Response:
    provider = Provider.model_validate(await json_body(request), context=DECLARED)
    async with request.app[PLATFORM].pool.acquire() as conn:
        created = await store.upsert(conn, environment(request).id, provider)
    return json_response({"data": _out(provider, "custom")}, status=201 if created else 200)


@routes.delete("/providers/{name}")
async def delete_provider(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    env = environment(request)
    async with request.app[PLATFORM].pool.acquire() as conn, conn.transaction():
        users = await integrations_repo.keys_for_provider(conn, env.id, name)
        if users and name not in builtin_providers():
            raise_error(409, "provider_in_use", f"provider '{name}' is used by integration(s) {', '.join(users)}: "
                        "delete them first", integrations=users)
        if not await store.delete(conn, env.id, name):
            raise_error(404, "unknown_provider", f"no custom provider '{name}' in environment '{env.name}'")
    return json_response({"success": True})


async def known(conn: object, environment_id: int, name: str) -> bool:
    return await find_provider(conn, environment_id, name) is not None
