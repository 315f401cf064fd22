"""`nango test` replays mocks recorded by Nango's own CLI: a folder with a Python sync (cursor pagination, a
header, an optional field) and an action (a JSON body), their mocks in Nango's 0.6x layout and in 0.7x's
`.test.json`, each request hashed from what Nango's Node client (`@nangohq/node`, tests/node) really sends.
Then a changed expectation and a missing mock fail with a clear message. A sync variant's recording (Nango's
`--variant` dry run) replays as that variant, with the base recording for a variant that has none."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestrator.testing.nango_recorded import js_json, request_identity
from tests.test_cli_stack import nango
from tests.test_node_client import _install, _run
from tests.test_pytest_plugin import _pytest

needs_node = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="Node.js is needed to hash requests as Nango's client sends them")

NANGO_YAML = """
integrations:
  acme:
    syncs:
      tickets:
        runs: every hour
        output: Ticket
        endpoint: GET /tickets
    actions:
      create-ticket:
        input: CreateTicket
        output: Ticket
        endpoint: POST /tickets
models:
  Ticket:
    id: string
    title: string
    closed_at?: string
  CreateTicket:
    subject: string
    team: string
"""

SYNC = '''
from orchestrator.sdk import NangoSync


async def fetch_data(nango: NangoSync) -> None:
    team = (await nango.get_metadata())["team"]
    async for page in nango.paginate("/v2/tickets", params={"team": team, "per_page": 2}, type="cursor",
                                     cursor_path_in_response="next", cursor_name_in_request="cursor",
                                     response_path="tickets", headers={"X-Api-Version": "2024-01"}):
        await nango.batch_save([{"id": str(t["id"]), "title": t["subject"], "closed_at": t.get("closed_at")}
                                for t in page], "Ticket")
    await nango.batch_delete([{"id": "gone-1"}], "Ticket")
'''

ACTION = '''
from models import CreateTicket, Ticket

from orchestrator.sdk import NangoAction


async def run_action(nango: NangoAction, input: CreateTicket) -> Ticket:
    created = (await nango.post("/v2/tickets", data={"subject": input.subject, "team": input.team})).data
    return Ticket(id=str(created["id"]), title=created["subject"])  # closed_at: None, absent from the recording
'''

# What the TypeScript originals asked Nango's client (pagination as Nango's paginator builds it), and the answers.
PAGES = [
    ({"method": "GET", "endpoint": "/v2/tickets", "params": {"team": "t1", "per_page": 2},
      "headers": {"X-Api-Version": "2024-01"}},
     {"tickets": [{"id": 1, "subject": "Login broken", "closed_at": "2024-05-01"}, {"id": 2, "subject": "Slow"}],
      "next": "c2"}),
    ({"method": "GET", "endpoint": "/v2/tickets", "params": {"team": "t1", "per_page": 2, "cursor": "c2"},
      "headers": {"X-Api-Version": "2024-01"}},
     {"tickets": [{"id": 3, "subject": "Typo"}], "next": None}),
]
CREATE = ({"method": "POST", "endpoint": "/v2/tickets", "data": {"subject": "Help", "team": "t1"}},
          {"id": 7, "subject": "Help"})
# Requests whose identity takes JavaScript's rules: String() of numbers, booleans and lists, the URL parser's
# path encoding and dot segments, a query in the endpoint, headers Nango leaves out, a long body.
ODD_REQUESTS = [
    {"method": "GET", "endpoint": "items/ä b/./x/../y", "params": {"f": 1.5, "big": 1e21, "tiny": 1e-7, "on": True,
                                                                  "ids": [1, 2], "q": "a+b c&d"}},
    {"method": "GET", "endpoint": "/search?z=1&a=%20x", "params": {"b": "2", "z": "3"}},
    {"method": "POST", "endpoint": "/bulk", "data": {"b": 1, "2": [1.0, None], "1": "é" * 1200},
     "headers": {"Content-Type": "application/json", "Accept": "text/csv", "X-Trace": 5, "Authorization": "x"}},
    {"method": "PUT", "endpoint": "/raw", "data": "plain text", "headers": {"Content-Type": "text/plain"}},
    # a link followed: Nango's paginator passes its path and query as the endpoint, our SDK the whole URL
    {"method": "GET", "endpoint": "/v2/tickets?page=2&per_page=2", "absolute_url": "https://api.acme.test"
                                                                                   "/v2/tickets?page=2&per_page=2"},
]
SAVED = [{"id": "1", "title": "Login broken", "closed_at": "2024-05-01"}, {"id": "2", "title": "Slow"},
         {"id": "3", "title": "Typo"}]

RECORDER = r"""
import crypto from 'node:crypto';
import { Nango } from '@nangohq/node';

// The identity Nango's recorder writes, computed here from the request as the client built it.
const ignored = new Set(['authorization', 'user-agent', 'nango-proxy-user-agent', 'accept-encoding', 'retries',
  'host', 'connection-id', 'provider-config-key', 'nango-is-sync', 'nango-is-script', 'nango-is-dry-run',
  'nango-activity-log-id', 'content-length', 'accept', 'base-url-override', 'retry-on']);
const byName = (a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
const sha1 = (text) => crypto.createHash('sha1').update(text).digest('hex');
const { host, requests } = JSON.parse(process.env.RECORD);
const nango = new Nango({ host, secretKey: 'test-key' });
const out = [];
for (const request of requests) {
  const { config } = await nango.proxy({ providerConfigKey: 'acme', connectionId: 'c1', ...request });
  const url = new URL(config.url);
  const seen = new Set();
  const headers = [];
  for (let [name, value] of Object.entries(config.headers)) {
    if (name.toLowerCase().startsWith('nango-proxy-')) name = name.slice(12);
    value = String(value);
    const lower = name.toLowerCase();
    if (seen.has(lower)) continue;
    seen.add(lower);
    if (ignored.has(lower) || (lower === 'content-type' && ['application/json', 'undefined'].includes(value))) continue;
    headers.push([name, value]);
  }
  let data = config.data ? (typeof config.data === 'string' ? config.data : JSON.stringify(config.data)) : undefined;
  if (data && data.length > 1000) data = 'sha1:' + sha1(data);
  const identity = { method: config.method.toLowerCase(), endpoint: url.pathname.replace(/^\/proxy\//, ''),
    params: [...url.searchParams.entries()].sort(byName), headers: headers.sort(byName), data };
  out.push({ identity, hash: sha1(JSON.stringify(identity)) });
}
console.log(JSON.stringify(out));
"""


@pytest.fixture
async def nango_server() -> AsyncIterator[str]:
    """Stands in for a Nango server: the client only needs an answer to build and send its request."""
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def _recorded_identities(host: str, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    await _install()
    script = Path(__file__).parent / "node" / "record_identity.mjs"
    script.write_text(RECORDER)
    try:
        code, out, err = await _run("node", script.name, timeout=60,
                                    env={"RECORD": json.dumps({"host": host, "requests": requests})})
    finally:
        script.unlink()
    assert code == 0, err
    return json.loads(out)


def _write(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def _project(root: Path) -> Path:
    folder = root / "integrations"
    (folder / "acme" / "syncs").mkdir(parents=True)
    (folder / "acme" / "actions").mkdir()
    (folder / "nango.yaml").write_text(NANGO_YAML)
    (folder / "acme" / "syncs" / "tickets.py").write_text(SYNC)
    (folder / "acme" / "actions" / "create_ticket.py").write_text(ACTION)
    return folder


def _legacy(folder: Path, identities: list[dict[str, Any]]) -> None:
    """The files `nango dryrun --save-responses` of Nango 0.6x writes."""
    mocks = folder / "acme" / "mocks"
    for (_, response), recorded, script in zip([*PAGES, CREATE], identities,
                                                      ["tickets", "tickets", "create-ticket"], strict=True):
        ident = recorded["identity"]
        _write(mocks / "nango" / ident["method"] / "proxy" / ident["endpoint"] / script / f"{recorded['hash']}.json",
               {"method": ident["method"], "endpoint": ident["endpoint"], "requestIdentityHash": recorded["hash"],
                "requestIdentity": ident, "response": response, "status": 200,
                "headers": {"content-type": "application/json"}})
    _write(mocks / "nango" / "getConnection.json", {"metadata": {"team": "t1"}, "connection_config": {}})
    _write(mocks / "nango" / "getMetadata.json", {"team": "t1"})
    _write(mocks / "tickets" / "Ticket" / "batchSave.json", SAVED)
    _write(mocks / "tickets" / "Ticket" / "batchDelete.json", [{"id": "gone-1"}])
    _write(mocks / "create-ticket" / "input.json", {"subject": "Help", "team": "t1"})
    _write(mocks / "create-ticket" / "output.json", {"id": "7", "title": "Help"})


def _unified_api(pairs: list[tuple[tuple[dict[str, Any], Any], dict[str, Any]]]) -> dict[str, Any]:
    """The `api` part of a `.test.json`: each recorded request and its answer, by method and endpoint."""
    out: dict[str, Any] = {}
    for (_, response), recorded in pairs:
        ident = recorded["identity"]
        request = {"params": dict(ident["params"]), "headers": dict(ident["headers"])}
        if ident.get("data"):
            request["data"] = json.loads(ident["data"])
        out.setdefault(ident["method"], {}).setdefault("/" + ident["endpoint"], []).append(
            {"response": response, "status": 200, "headers": {}, "hash": recorded["hash"],
             "request": {k: v for k, v in request.items() if v}})
    return {m: {e: a[0] if len(a) == 1 else a for e, a in eps.items()} for m, eps in out.items()}  # as Nango


def _unified(folder: Path, identities: list[dict[str, Any]]) -> None:
    """The one file per script Nango 0.7x writes (`tests/<script>.test.json`)."""
    tests = folder / "acme" / "tests"
    _write(tests / "tickets.test.json", {
        "nango": {"getConnection": {"connectionId": "c1", "provider": "acme"}, "getMetadata": {"team": "t1"},
                  "batchSave": {"Ticket": SAVED}, "batchDelete": {"Ticket": [{"id": "gone-1"}]}},
        "api": _unified_api(list(zip(PAGES, identities[:2], strict=True)))})
    _write(tests / "create-ticket.test.json", {
        "input": {"subject": "Help", "team": "t1"}, "output": {"id": "7", "title": "Help"}, "nango": {},
        "api": _unified_api([(CREATE, identities[2])])})


@needs_node
async def test_nango_test_replays_mocks_recorded_by_nangos_cli(nango_server: str, tmp_path: Path) -> None:
    requests = [request for request, _ in [*PAGES, CREATE]]
    sent = [{k: v for k, v in r.items() if k != "absolute_url"} for r in [*requests, *ODD_REQUESTS]]
    identities = await _recorded_identities(nango_server, sent)
    for request, recorded in zip([*requests, *ODD_REQUESTS], identities, strict=True):  # what Nango's client sends
        ours = request_identity(request["method"], request["endpoint"], request.get("params"),
                                request.get("headers"), request.get("data"), request.get("absolute_url"))
        assert ours.hash == recorded["hash"], (js_json(recorded["identity"]), ours)

    identities = identities[:len(requests)]
    folder = _project(tmp_path)
    _legacy(folder, identities)
    passed = await nango("test", "--path", str(folder))
    assert passed.code == 0, passed.stdout + passed.stderr
    assert "PASS acme/tickets (Nango 0.6x mocks) (2 request(s))" in passed.stdout, passed.stdout
    assert "PASS acme/create-ticket (Nango 0.6x mocks) (1 request(s))" in passed.stdout

    # a changed expectation: a readable diff against the recorded batchSave
    saved = folder / "acme" / "mocks" / "tickets" / "Ticket" / "batchSave.json"
    saved.write_text(saved.read_text().replace('"Slow"', '"Fast"'))
    failed = await nango("test", "tickets", "--path", str(folder))
    assert failed.code == 1 and "FAIL acme/tickets" in failed.stdout
    lines = [line.replace(" ", "") for line in failed.stdout.splitlines()]
    assert '-"title":"Fast"' in lines and '+"title":"Slow"' in lines, failed.stdout
    _write(saved, SAVED[::-1])
    failed = await nango("test", "tickets", "--path", str(folder))
    assert failed.code == 1 and "Ticket batchSave: the same records in another order" in failed.stdout
    _write(saved, SAVED)

    # a missing mock: the request Nango would look for, named with its parameters
    page_two = folder / "acme" / "mocks" / "nango" / "get" / "proxy" / "v2" / "tickets" / "tickets" / (
        identities[1]["hash"] + ".json")
    page_two.unlink()
    failed = await nango("test", "tickets", "--path", str(folder), "--json")
    assert failed.code == 1
    error = json.loads(failed.stdout)["results"][0]["error"]
    assert 'no recorded response for GET /v2/tickets params [["cursor","c2"],["per_page","2"],["team","t1"]]' in error
    assert '["per_page","2"],["team","t1"]] headers [["X-Api-Version","2024-01"]]' in error  # what was recorded

    # the recorded output of the action is compared
    output = folder / "acme" / "mocks" / "create-ticket" / "output.json"
    _write(output, {"id": "8", "title": "Help"})
    failed = await nango("test", "create-ticket", "--path", str(folder))
    lines = [line.replace(" ", "") for line in failed.stdout.splitlines()]
    assert failed.code == 1 and '-"id":"8",' in lines and '+"id":"7",' in lines, failed.stdout

    # Nango 0.7x: one .test.json per script, preferred over the older files as Nango does
    _unified(folder, identities)
    passed = await nango("test", "--path", str(folder), "--json")
    assert passed.code == 0, passed.stdout + passed.stderr
    results = json.loads(passed.stdout)["results"]
    assert [(r["ok"], r["recorded_by"]) for r in results] == [(True, "Nango 0.7x .test.json")] * 2


USER_TEST = '''
def test_recorded_sync(nango_mock):
    result = nango_mock.run("tickets").assert_ok()
    result.assert_saved("Ticket", {"id": "2", "title": "Slow"}, count=3)
    nango_mock.assert_matches_saved("tickets")


def test_recorded_action(nango_mock):
    nango_mock.assert_matches_saved("create-ticket")
    assert nango_mock.run("create-ticket", input={"subject": "Help", "team": "t1"}).assert_ok().output["id"] == "7"
'''


@needs_node
async def test_the_pytest_plugin_replays_them_too(nango_server: str, tmp_path: Path) -> None:
    identities = await _recorded_identities(nango_server, [request for request, _ in [*PAGES, CREATE]])
    folder = _project(tmp_path)
    _legacy(folder, identities)
    _legacy_variant(folder, identities, "eu")  # the sync's variant "eu" recorded too (VARIANT_TEST, below)
    (folder / "tests").mkdir()
    (folder / "tests" / "test_recorded.py").write_text(USER_TEST)
    (folder / "tests" / "test_variants.py").write_text(VARIANT_TEST)
    run = await asyncio.to_thread(_pytest, folder, "tests")
    assert run.returncode == 0 and "5 passed" in run.stdout, run.stdout + run.stderr


@needs_node
async def test_a_script_reads_only_its_own_recorded_answers(nango_server: str, tmp_path: Path) -> None:
    """The action asks for the sync's recorded page: filed under the sync's name, it is not the action's."""
    identities = await _recorded_identities(nango_server, [request for request, _ in [*PAGES, CREATE]])
    folder = _project(tmp_path)
    _legacy(folder, identities)
    action = folder / "acme" / "actions" / "create_ticket.py"
    action.write_text(ACTION.replace(
        'created = (await nango.post("/v2/tickets", data={"subject": input.subject, "team": input.team})).data',
        'await nango.get("/v2/tickets", params={"team": "t1", "per_page": 2}, headers={"X-Api-Version": "2024-01"})\n'
        '    created = {"id": 7, "subject": "Help"}'))
    failed = await nango("test", "create-ticket", "--path", str(folder))
    assert failed.code == 1 and "no recorded response for GET /v2/tickets" in failed.stdout
    for escape in ("/../../../tickets/Ticket/batchSave", "/%2e%2e/%2e%2e/nango/getConnection"):
        action.write_text(ACTION.replace('nango.post("/v2/tickets"', f'nango.post("{escape}"'))
        failed = await nango("test", "create-ticket", "--path", str(folder))
        assert failed.code == 1 and "no recorded response for POST" in failed.stdout, failed.stdout


async def test_a_broken_recording_is_named(tmp_path: Path) -> None:
    """Each unreadable file fails its own script with the file's name; the other scripts still run."""
    folder = _project(tmp_path)
    mocks = folder / "acme" / "mocks"
    _write(mocks / "create-ticket" / "output.json", {"id": "7", "title": "Help"})
    (mocks / "tickets" / "Ticket").mkdir(parents=True)
    (mocks / "tickets" / "Ticket" / "batchSave.json").write_text("[{not json")
    failed = await nango("test", "--path", str(folder), "--json")
    assert failed.code == 1
    tickets, action = json.loads(failed.stdout)["results"]
    assert "cannot read the recorded mock" in tickets["error"] and "Ticket/batchSave.json" in tickets["error"]
    assert "no recorded input for action 'create-ticket' (its input is CreateTicket)" in action["error"]
    _write(mocks / "create-ticket" / "input.json", {"subject": "Help", "team": "t1"})
    failed = await nango("test", "create-ticket", "--path", str(folder))
    assert failed.code == 1 and "no recorded response for POST /v2/tickets" in failed.stdout  # ran: no mock for it

    _write(mocks / "tickets" / "Ticket" / "batchSave.json", {"id": "1"})
    failed = await nango("test", "tickets", "--path", str(folder))
    assert failed.code == 1 and "batchSave.json must hold a list of records, not dict" in failed.stdout

    _write(folder / "acme" / "tests" / "tickets.test.json", {"api": ["GET /v2/tickets"]})
    failed = await nango("test", "tickets", "--path", str(folder))
    assert failed.code == 1 and "tickets.test.json: 'api' must be an object of methods" in failed.stdout


async def test_a_code_first_port_passes_the_same_recorded_mocks(nango_server: str, tmp_path: Path) -> None:
    """The folder converted to code-first (`nango migrate-to-code`): `nango test` reads its Python definitions,
    passes against the same recordings, and leaves its hand-written models.py as it is."""
    requests = [request for request, _ in [*PAGES, CREATE]]
    identities = await _recorded_identities(nango_server, [{k: v for k, v in r.items() if k != "absolute_url"}
                                                           for r in requests])
    folder = _project(tmp_path)
    _legacy(folder, identities)
    converted = await nango("migrate-to-code", "--path", str(folder))
    assert converted.code == 0, converted.stdout + converted.stderr
    assert not (folder / "nango.yaml").exists()
    models = (folder / "models.py").read_text()
    passed = await nango("test", "--path", str(folder))
    assert passed.code == 0, passed.stdout + passed.stderr
    assert "PASS acme/tickets (Nango 0.6x mocks)" in passed.stdout and "PASS acme/create-ticket" in passed.stdout
    assert (folder / "models.py").read_text() == models


# The same requests, answered otherwise for the sync's variant "eu" (another region's tickets).
EU_PAGES = [(PAGES[0][0], {"tickets": [{"id": 11, "subject": "Facture"},
                                       {"id": 12, "subject": "RGPD", "closed_at": "2024-06-01"}], "next": "c2"}),
            (PAGES[1][0], {"tickets": [{"id": 13, "subject": "Langue"}], "next": None})]
EU_SAVED = [{"id": "11", "title": "Facture"}, {"id": "12", "title": "RGPD", "closed_at": "2024-06-01"},
            {"id": "13", "title": "Langue"}]


def _legacy_variant(folder: Path, identities: list[dict[str, Any]], variant: str) -> Path:
    """What `nango dryrun tickets <connection> --variant <variant> --save-responses` of Nango 0.6x adds: each
    request one folder below the sync's (`.../tickets/<variant>/<hash>.json`), the records in
    `mocks/tickets/<variant>/Ticket/`. Returns the folder of its second page."""
    mocks = folder / "acme" / "mocks"
    for (_, response), recorded in zip(EU_PAGES, identities[:2], strict=True):
        ident = recorded["identity"]
        page = mocks / "nango" / ident["method"] / "proxy" / ident["endpoint"] / "tickets" / variant
        _write(page / f"{recorded['hash']}.json",
               {"method": ident["method"], "endpoint": ident["endpoint"], "requestIdentityHash": recorded["hash"],
                "requestIdentity": ident, "response": response, "status": 200,
                "headers": {"content-type": "application/json"}})
    _write(mocks / "tickets" / variant / "Ticket" / "batchSave.json", EU_SAVED)
    _write(mocks / "tickets" / variant / "Ticket" / "batchDelete.json", [{"id": "gone-1"}])
    return page


def _diff_lines(stdout: str) -> list[str]:
    return [line.replace(" ", "") for line in stdout.splitlines()]


@needs_node
async def test_a_sync_variant_replays_its_own_recording(nango_server: str, tmp_path: Path) -> None:
    identities = await _recorded_identities(nango_server, [request for request, _ in [*PAGES, CREATE]])
    folder = _project(tmp_path)
    _legacy(folder, identities)
    page_two = _legacy_variant(folder, identities, "eu") / (identities[1]["hash"] + ".json")

    passed = await nango("test", "tickets", "--variant", "eu", "--path", str(folder))
    assert passed.code == 0, passed.stdout + passed.stderr
    assert "PASS acme/tickets (Nango 0.6x mocks, variant eu) (2 request(s))" in passed.stdout, passed.stdout
    # every sync with a recording, as the variant; the action has no variants
    passed = await nango("test", "--variant", "eu", "--path", str(folder))
    assert passed.code == 0 and "[1/1] PASS acme/tickets (Nango 0.6x mocks, variant eu)" in passed.stdout
    # the base run keeps the base recording beside the variant's
    passed = await nango("test", "--path", str(folder))
    assert passed.code == 0 and "PASS acme/tickets (Nango 0.6x mocks) (2 request(s))" in passed.stdout

    # the variant's own records are what its run must produce: the base ones are a diff
    saved = folder / "acme" / "mocks" / "tickets" / "eu" / "Ticket" / "batchSave.json"
    _write(saved, SAVED)
    failed = await nango("test", "tickets", "--variant", "eu", "--path", str(folder))
    assert failed.code == 1 and "FAIL acme/tickets (Nango 0.6x mocks, variant eu)" in failed.stdout
    lines = _diff_lines(failed.stdout)
    assert '-"title":"Loginbroken"' in lines and '+"title":"Facture"' in lines, failed.stdout
    _write(saved, EU_SAVED)

    # a variant with its own recording never reads the base one: its missing page fails, though base has it
    page_two.unlink()
    failed = await nango("test", "tickets", "--variant", "eu", "--path", str(folder), "--json")
    assert failed.code == 1
    error = json.loads(failed.stdout)["results"][0]["error"]
    assert ('no recorded response for GET /v2/tickets params [["cursor","c2"],["per_page","2"],["team","t1"]] '
            'headers [["X-Api-Version","2024-01"]] in the recording of variant \'eu\'') in error, error
    assert f"looked in {page_two.parent};" in error

    # a variant Nango recorded nothing for replays the base recording, as Nango's test helpers do
    passed = await nango("test", "tickets", "--variant", "us", "--path", str(folder), "--json")
    assert passed.code == 0, passed.stdout + passed.stderr
    result = json.loads(passed.stdout)["results"][0]
    assert (result["ok"], result["requests"]) == (True, 2)
    assert result["recorded_by"] == "Nango 0.6x mocks, base recording: none for variant us"

    for args, message in (
            (("create-ticket", "--variant", "eu"), "variants are for syncs; 'create-ticket' is an action"),
            (("tickets", "--variant", "../eu"), "variant '../eu': a variant's recording is a folder")):
        failed = await nango("test", *args, "--path", str(folder))
        assert failed.code == 1 and message in failed.stdout + failed.stderr, failed.stdout + failed.stderr


VARIANT_TEST = '''
def test_the_variant_replays_its_own_recording(nango_mock):
    result = nango_mock.run("tickets", variant="eu").assert_ok()
    assert result.mock.nango.variant == "eu"
    result.assert_saved("Ticket", {"id": "11", "title": "Facture"}, {"id": "13"}, count=3)
    nango_mock.assert_matches_saved("tickets", variant="eu")


def test_a_variant_without_its_own_replays_the_base_recording(nango_mock):
    result = nango_mock.run("tickets", variant="us").assert_ok()
    assert result.mock.nango.variant == "us"
    result.assert_saved("Ticket", {"id": "2", "title": "Slow"}, count=3)
    nango_mock.assert_matches_saved("tickets", variant="us")


def test_the_base_run_reads_no_variant(nango_mock):
    result = nango_mock.run("tickets").assert_ok()
    assert result.mock.nango.variant == "base"
    result.assert_saved("Ticket", {"id": "1", "title": "Login broken"}, count=3)
'''


@needs_node
async def test_a_variant_recorded_by_nango_07x(nango_server: str, tmp_path: Path) -> None:
    """Nango 0.7x records a variant's dry run in the sync's one `.test.json`, its models named `<Model>::<variant>`."""
    identities = await _recorded_identities(nango_server, [request for request, _ in [*PAGES, CREATE]])
    folder = _project(tmp_path)
    _unified(folder, identities)
    test_file = folder / "acme" / "tests" / "tickets.test.json"
    _write(test_file, {
        "nango": {"getConnection": {"connectionId": "c1", "provider": "acme"}, "getMetadata": {"team": "t1"},
                  "batchSave": {"Ticket::eu": EU_SAVED}, "batchDelete": {"Ticket::eu": [{"id": "gone-1"}]}},
        "api": _unified_api(list(zip(EU_PAGES, identities[:2], strict=True)))})
    passed = await nango("test", "tickets", "--variant", "eu", "--path", str(folder))
    assert passed.code == 0, passed.stdout + passed.stderr
    assert "PASS acme/tickets (Nango 0.7x .test.json, variant eu) (2 request(s))" in passed.stdout

    # the file now holds the variant's recording only: the base run says so instead of diffing "Ticket::eu"
    failed = await nango("test", "tickets", "--path", str(folder))
    assert failed.code == 1 and "holds the recording of variant 'eu', not the base one" in failed.stdout

    data = json.loads(test_file.read_text())
    data["nango"]["batchSave"]["Ticket::eu"] = SAVED
    _write(test_file, data)
    failed = await nango("test", "tickets", "--variant", "eu", "--path", str(folder))
    lines = _diff_lines(failed.stdout)
    assert failed.code == 1 and '-"title":"Loginbroken"' in lines and '+"title":"Facture"' in lines, failed.stdout
