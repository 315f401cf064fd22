"""POST /deploy: what `nango deploy` sends (multipart: one zip bundle per integration, and optionally a
`providers` part: the folder's providers.yaml, custom providers created or replaced before the bundles)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.api.common import environment, json_body, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.bundles.limits import BundleLimits
from orchestrator.control.deploy import UploadedBundle, deploy, history, rollback
from orchestrator.errors import BundleError, BundleLimitError, InvalidInputError
from orchestrator.providers.catalog import Provider, load_providers_file

routes = web.RouteTableDef()
MAX_PROVIDERS_BYTES = 2 * 1024 * 1024  # Nango's own catalog of every provider is a fifth of it


@routes.post("/deploy")
async def post_deploy(request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/"):
        raise_error(400, "invalid_body", "deploy expects multipart/form-data with one 'bundle' part per integration")
    try:
        reader = await request.multipart()
    except ValueError as exc:  # e.g. no boundary in the Content-Type
        raise_error(400, "invalid_body", f"malformed multipart request: {exc}")
    bundles: list[UploadedBundle] = []
    options: dict[str, object] = {}
    providers: dict[str, Provider] = {}
    limits = BundleLimits.from_settings(request.app[PLATFORM].settings)
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        label = (part.filename or "").removesuffix(".zip") or "?"  # `nango deploy` names each part <integration>.zip
        data = await _read_capped(part, limits, label)
        if part.name == "bundle":
            try:
                bundles.append(await asyncio.to_thread(UploadedBundle.parse, data, limits, label))
            except BundleLimitError as exc:  # a zip bomb, or just too big: nothing was stored
                raise_error(413, exc.code, exc.message, integration=exc.fields.get("integration"),
                            setting=exc.fields.get("setting"), limit=exc.fields.get("limit"))
            except BundleError as exc:  # the upload is not a bundle: the caller's fault, not ours
                raise_error(400, "invalid_bundle", exc.message)
        elif part.name == "providers":
            if len(data) > MAX_PROVIDERS_BYTES:  # YAML parses at about 0.2 MB/s: a big part would take minutes
                raise_error(413, "providers_too_large", f"the 'providers' part is {len(data):,} bytes; a providers "
                            f"file may hold at most {MAX_PROVIDERS_BYTES:,}")
            try:  # off the event loop: parsing and validating take a while even within the limit
                providers.update(await asyncio.to_thread(load_providers_file, bytes(data).decode(errors="replace")))
            except InvalidInputError as exc:
                raise_error(400, "invalid_providers", exc.message)
        elif part.name == "options":
            try:
                options = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise_error(400, "invalid_body", "the 'options' part is not JSON")
            if not isinstance(options, dict):  # `0`, `[]`, `null`: read with .get below (a 500)
                shown = data[:40].decode(errors="replace")
                raise_error(400, "invalid_body", "the 'options' part must be a JSON object like "
                            f'{{"allow_removal": false, "only": []}}, got {shown}')
    if not bundles and not providers:
        raise_error(400, "invalid_body", "no 'bundle' part in the deploy request")
    app = request.app
    result = await deploy(app[PLATFORM], environment(request), bundles,
                          allow_removal=bool(options.get("allow_removal")), providers=providers,
                          only=_only(options.get("only")), deployed_by=_who(request))
    return json_response(result.as_dict(), status=409 if result.needs_confirmation else 200)


async def _read_capped(part: BodyPartReader, limits: BundleLimits, label: str) -> bytes:
    """A part's bytes, read in chunks and refused (413) once past BUNDLE_MAX_BYTES, before it is all in memory."""
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limits.max_bytes:
            raise_error(413, "bundle_limit_exceeded",
                        f"bundle of integration '{label}' is more than {limits.max_bytes} bytes compressed; the limit "
                        f"is BUNDLE_MAX_BYTES={limits.max_bytes}", integration=label, setting="BUNDLE_MAX_BYTES",
                        limit=limits.max_bytes)
    return bytes(data)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    integration: str = Field(min_length=1)
    version: int = Field(ge=1)


class DeployHistory(BaseModel):
    data: list[dict[str, Any]]


@routes.get("/deploy/history")
async def get_history(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        rows = await history(conn, environment(request), request.query.get("integration") or None)
    return json_response({"data": rows})


@routes.post("/deploy/rollback")
async def post_rollback(request: web.Request) -> web.Response:
    body = RollbackBody.model_validate(await json_body(request))
    app = request.app
    result = await rollback(app[PLATFORM], environment(request),
                            body.integration, body.version, deployed_by=_who(request))
    return json_response(result.as_dict())


def _who(request: web.Request) -> str:
    """Who deployed: the CLI sends user@host in X-Nango-Deployed-By; the API key otherwise."""
    return (request.headers.get("X-Nango-Deployed-By") or "api")[:200]


def _only(raw: Any) -> list[str] | None:
    if raw in (None, [], ""):
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) and ":" in x for x in raw):
        raise_error(400, "invalid_body", "options.only must be a list like ['sync:issues', 'action:create-issue']")
    return list(raw)
