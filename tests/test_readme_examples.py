"""The README's custom-provider example, run as written against the real stack: the providers.yaml entry deployed
with a folder by `nango deploy`, the same provider created with `POST /providers`, an integration and connections
of it (one per subdomain, one on a self-hosted instance through `connection_config.base_url`), and a sync that
pages through the instance with the provider's pagination and key header. Keep these texts and the README's in step.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from orchestrator.authoring.compile import compile_project
from orchestrator.client import ApiError
from tests.conftest import GithubSetup, Stack, allow_egress, serve, wait_for_job

PROVIDERS_YAML = """\
acme:
  display_name: Acme CRM
  auth_mode: API_KEY
  base_url: https://${connectionConfig.subdomain}.acme.example/api
  connection_config:
    subdomain: Your Acme subdomain (the part before .acme.example)
  api_key_header: X-Api-Key
  api_key_template: ${apiKey}
  pagination:
    type: cursor
    cursor_name_in_request: cursor
    cursor_path_in_response: next
    response_path: items
    limit_name_in_request: limit
"""

POST_PROVIDERS = """\
{"name": "acme", "display_name": "Acme CRM", "auth_mode": "API_KEY",
 "base_url": "https://${connectionConfig.subdomain}.acme.example/api",
 "connection_config": {"subdomain": "Your Acme subdomain (the part before .acme.example)"},
 "api_key_header": "X-Api-Key", "api_key_template": "${apiKey}",
 "pagination": {"type": "cursor", "cursor_name_in_request": "cursor", "cursor_path_in_response": "next",
                "response_path": "items", "limit_name_in_request": "limit"}}
"""

NANGO_YAML = """\
integrations:
  acme:
    syncs:
      contacts:
        runs: every hour
        output: AcmeContact
        endpoint: GET /acme/contacts
models:
  AcmeContact:
    id: string
    name: string
"""

SYNC = '''\
from orchestrator.sdk import NangoSync


async def fetch_data(nango: NangoSync) -> None:
    async for page in nango.paginate("/contacts", limit=2):
        await nango.batch_save([{"id": str(c["id"]), "name": c["name"]} for c in page], "AcmeContact")
'''

CONNECTION_SUBDOMAIN = """\
{"provider_config_key": "acme", "connection_id": "customer-1",
 "credentials": {"type": "API_KEY", "apiKey": "k-123"},
 "connection_config": {"subdomain": "customer1"}}
"""

CONNECTION_SELF_HOSTED = """\
{"provider_config_key": "acme", "connection_id": "on-prem-1",
 "credentials": {"type": "API_KEY", "apiKey": "k-123"},
 "connection_config": {"base_url": "https://acme.internal.example.com/api"}}
"""

CONTACTS = [{"id": i, "name": f"contact {i}"} for i in range(1, 6)]


def _acme_instance() -> tuple[web.Application, list[dict[str, Any]]]:
    """A self-hosted Acme: GET /api/contacts pages by cursor and wants its key in X-Api-Key."""
    seen: list[dict[str, Any]] = []

    async def contacts(request: web.Request) -> web.Response:
        seen.append({"key": request.headers.get("X-Api-Key"), "query": dict(request.query)})
        if request.headers.get("X-Api-Key") != "k-123":
            return web.json_response({"error": "bad key"}, status=401)
        start, limit = int(request.query.get("cursor") or 0), int(request.query["limit"])
        page = CONTACTS[start:start + limit]
        following = start + limit if start + limit < len(CONTACTS) else None
        return web.json_response({"items": page, "next": str(following) if following is not None else None})

    app = web.Application()
    app.router.add_get("/api/contacts", contacts)
    return app, seen


def _folder(tmp: Path) -> Path:
    folder = tmp / "nango-integrations"
    (folder / "acme" / "syncs").mkdir(parents=True)
    (folder / "nango.yaml").write_text(NANGO_YAML)
    (folder / "providers.yaml").write_text(PROVIDERS_YAML)
    (folder / "acme" / "syncs" / "contacts.py").write_text(SYNC)
    return folder


def test_the_yaml_entry_and_the_post_body_are_one_provider() -> None:
    body = json.loads(POST_PROVIDERS)
    assert {"name": "acme", **yaml.safe_load(PROVIDERS_YAML)["acme"]} == body


async def test_post_providers_then_an_integration_and_connections_of_it(stack: Stack) -> None:
    _, key = await stack.new_environment()
    async with stack.api(key) as api:
        made = await api.request("POST", "/providers", json=json.loads(POST_PROVIDERS))
        assert made["data"]["source"] == "custom"
        listed = await api.request("GET", "/providers", params={"source": "custom"})
        assert [p["name"] for p in listed["data"]] == ["acme"]
        await api.create_integration("acme", "acme")
        for body in (CONNECTION_SUBDOMAIN, CONNECTION_SELF_HOSTED):
            await api.request("POST", "/connections", json=json.loads(body))
        got = await api.get_connection("acme", "on-prem-1")
        assert got["connection_config"] == {"base_url": "https://acme.internal.example.com/api"}
        bad = dict(json.loads(POST_PROVIDERS), pagination={"type": "cursor", "cursor_path": "next"})
        try:
            await api.request("POST", "/providers", json=bad)
        except ApiError as exc:  # a typo in the definition is refused, naming the field
            assert exc.status == 400 and "cursor_path" in exc.message
        else:
            raise AssertionError("an unknown pagination field must be refused")


async def test_a_folder_s_providers_yaml_and_a_self_hosted_instance(stack: Stack, tmp_path: Path) -> None:
    env, key = await stack.new_environment()
    app, seen = _acme_instance()
    folder = _folder(tmp_path)
    async with serve(app) as instance, allow_egress(stack, instance), stack.api(key) as api:
        # `nango deploy` uploads providers.yaml with the bundles; the integration named after the provider is made
        result = await api.deploy(await asyncio.to_thread(compile_project, folder),
                                  providers=(folder / "providers.yaml").read_text())
        assert result["providers"] == ["acme"]
        body = json.loads(CONNECTION_SELF_HOSTED)
        body["connection_config"]["base_url"] = f"{instance}/api"  # the README's host is this test's server
        await api.request("POST", "/connections", json=body)
        await wait_for_job(stack, GithubSetup(env, key, "", "on-prem-1"))
        page = await api.request("GET", "/records", params={"model": "AcmeContact"},
                                 headers={"Connection-Id": "on-prem-1", "Provider-Config-Key": "acme"})
    assert sorted(r["name"] for r in page["records"]) == [c["name"] for c in CONTACTS]
    assert {s["key"] for s in seen} == {"k-123"}  # the key in the provider's header, on every page
    assert [s["query"].get("cursor") for s in seen] == [None, "2", "4"]
