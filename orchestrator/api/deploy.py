"""POST /deploy: what `nango deploy` sends (multipart: one zip bundle per integration, and optionally a
`providers` part: the folder's providers.yaml, custom providers created or replaced before the bundles)."""

from __future__ import annotations

import orjson
from aiohttp import BodyPartReader, web

from orchestrator.api.common import environment, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import BUNDLES, POOL, SEALER, SETTINGS, TEMPORAL
from orchestrator.deploy import UploadedBundle, deploy
from orchestrator.errors import BundleError, InvalidInputError
from orchestrator.providers.catalog import Provider, load_providers_file

routes = web.RouteTableDef()
MAX_BUNDLE = 50 * 1024 * 1024


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
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        data = await part.read(decode=False)
        if len(data) > MAX_BUNDLE:
            raise_error(413, "bundle_too_large", f"a bundle is larger than {MAX_BUNDLE} bytes")
        if part.name == "bundle":
            try:
                bundles.append(UploadedBundle.parse(bytes(data)))
            except BundleError as exc:  # the upload is not a bundle: the caller's fault, not ours
                raise_error(400, "invalid_bundle", exc.message)
        elif part.name == "providers":
            try:
                providers.update(load_providers_file(bytes(data).decode(errors="replace")))
            except InvalidInputError as exc:
                raise_error(400, "invalid_providers", exc.message)
        elif part.name == "options":
            try:
                options = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise_error(400, "invalid_body", "the 'options' part is not JSON")
    if not bundles and not providers:
        raise_error(400, "invalid_body", "no 'bundle' part in the deploy request")
    app = request.app
    result = await deploy(app[POOL], app[SEALER], app[BUNDLES], app[TEMPORAL], environment(request), bundles,
                          allow_removal=bool(options.get("allow_removal")),
                          task_queue_prefix=app[SETTINGS].task_queue_prefix, providers=providers)
    return json_response(result.as_dict(), status=409 if result.needs_confirmation else 200)
