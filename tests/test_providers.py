"""Providers: the built-in catalog (schema, corpus coverage, placeholders), custom providers declared
through the API and through `nango deploy`, used by real proxy calls and syncs, and `nango providers`."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from orchestrator.config.nango_yaml import load_config
from orchestrator.errors import InvalidInputError
from orchestrator.platform import open_platform
from orchestrator.providers.catalog import Provider, builtin_providers, get_provider, load_providers_file, placeholders
from tests.conftest import EXAMPLES, Stack, eventually
from tests.test_cli_stack import nango

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "nango-yaml"
CORPUS_FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []


# ------------------------------------------------------------------------------------------ catalog
def test_catalog_validates_and_is_consistent() -> None:
    catalog = builtin_providers()
    assert len(catalog) >= 52
    for name, provider in catalog.items():
        assert provider.name == name
        assert provider.base_url.startswith(("https://", "${connectionConfig.")), name
        if provider.auth_mode == "OAUTH2":
            assert provider.authorization_url and provider.token_url, name
        if provider.auth_mode == "API_KEY":
            assert provider.api_key_query or "${apiKey}" in provider.api_key_template, name
        # round trip: what the API answers validates again
        assert Provider.model_validate(provider.public()) == provider


def _filled(template: str) -> str:
    """A URL as a connection makes it; one that starts with a placeholder takes a whole URL from it."""
    template = re.sub(r"^\$\{connectionConfig\.[A-Za-z0-9_]+\}", "https://instance.example", template)
    return re.sub(r"\$\{connectionConfig\.[A-Za-z0-9_]+\}", "tenant", template)


def test_catalog_has_150_well_formed_providers() -> None:
    catalog = builtin_providers()
    assert len(catalog) >= 150
    for name, p in catalog.items():
        for url in filter(None, (p.base_url, p.authorization_url, p.token_url, p.docs)):
            parts = urlsplit(_filled(url))
            assert parts.scheme == "https" and parts.netloc and " " not in url, (name, url)
            assert "${" not in _filled(url), (name, url)   # only connection-config placeholders are filled in URLs
            for key in placeholders(url):
                assert key in p.connection_config and p.connection_config[key].strip(), (name, key)
        # placeholders are filled in URLs only: headers and scopes would reach the provider verbatim
        assert not any("${" in v for v in (*p.headers.values(), *p.default_scopes)), name
        assert p.scope_separator in (" ", ",", "+"), name
        assert not any(p.scope_separator in s or not s for s in p.default_scopes), name
        if p.webhook:
            assert p.webhook.signature_header.strip() == p.webhook.signature_header, name


def test_github_entry_keeps_its_behaviour() -> None:
    github = get_provider("github")
    assert github.pagination == {"type": "link", "link_rel_in_response_header": "next",
                                 "limit_name_in_request": "per_page"}
    assert github.rate_limit.reset_header == "x-ratelimit-reset" and github.webhook is not None
    assert github.resolve_base_url({}) == "https://api.github.com"


@pytest.mark.skipif(not CORPUS_FILES, reason="shared corpus not present")
def test_every_corpus_integration_resolves_to_a_provider() -> None:
    missing = []
    for path in CORPUS_FILES:
        for key in load_config(path).integrations:
            name = path.stem if key.startswith("${") else key   # `${PWD}`: the file is named after it
            if name not in builtin_providers():
                missing.append(f"{path.name}: {name}")
    assert not missing


def test_placeholders_fill_from_connection_config() -> None:
    shopify = get_provider("shopify")
    assert shopify.resolve_base_url({"subdomain": "acme"}) == "https://acme.myshopify.com"
    with pytest.raises(InvalidInputError, match="subdomain"):
        shopify.resolve_base_url({})
    # a connection's base_url wins, and may itself use placeholders
    assert shopify.resolve_base_url({"base_url": "http://h:${connectionConfig.port}/", "port": 8}) == "http://h:8"
    assert get_provider("jira").resolve_base_url({"cloudId": "c1"}) == "https://api.atlassian.com/ex/jira/c1"
    assert get_provider("zoho-crm").resolve_base_url({"extension": "eu"}) == "https://www.zohoapis.eu/crm"


@pytest.mark.parametrize(("body", "message"), [
    ({"auth_mode": "API_KEY", "base_url": "https://${connectionConfig.host}"}, "not declared in connection_config"),
    ({"auth_mode": "OAUTH2", "base_url": "https://x", "token_url": "https://x/t"}, "needs an authorization_url"),
    ({"auth_mode": "API_KEY", "base_url": "https://x", "pagination": {"type": "cursor"}}, "cursor pagination"),
    ({"auth_mode": "API_KEY", "base_url": "https://x", "pagination": {"type": "link", "pgae": 1}}, "pgae"),
    ({"auth_mode": "MAGIC", "base_url": "https://x"}, "auth_mode"),
    ({"auth_mode": "API_KEY", "base_url": "https://x", "colour": "red"}, "colour"),
])
def test_schema_rejects_with_a_named_reason(body: dict, message: str) -> None:
    text = yaml.safe_dump({"acme": {"display_name": "Acme", **body}})
    with pytest.raises(InvalidInputError, match=message) as info:
        load_providers_file(text)
    assert "provider 'acme'" in info.value.message


# ------------------------------------------------------------------------------- custom providers
def acme_provider(stack: Stack, name: str) -> dict:
    """The demo provider (GitHub-like) as an unlisted API: API key as `token <key>`, port from the
    connection config, link pagination by default."""
    scheme_host = urlsplit(stack.provider_url)
    return {"name": name, "display_name": "Acme Git", "auth_mode": "API_KEY",
            "base_url": f"http://{scheme_host.hostname}:${{connectionConfig.port}}",
            "api_key_template": "token ${apiKey}", "connection_config": {"port": "the API's port"},
            "pagination": {"type": "link", "link_rel_in_response_header": "next",
                           "limit_name_in_request": "per_page"}}


async def test_custom_provider_through_the_api_serves_the_proxy(stack: Stack) -> None:
    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"{env}/repo", 3)
    port = urlsplit(stack.provider_url).port
    async with stack.api(key) as api:
        created = await api.request("POST", "/providers", json=acme_provider(stack, "acme-git"))
        assert created["data"]["source"] == "custom"
        listed = (await api.request("GET", "/providers", params={"source": "custom"}))["data"]
        assert [p["name"] for p in listed] == ["acme-git"]
        assert (await api.request("GET", "/providers/shopify"))["data"]["source"] == "builtin"
        await api.create_integration("acme", "acme-git")
        await api.create_connection("acme", "c1", {"type": "API_KEY", "apiKey": "demo-token"},
                                    connection_config={"port": port})
        before = len(stack.demo.requests)
        resp = await api.proxy("GET", f"/repos/{repo}/issues", integration="acme", connection_id="c1")
        assert resp.status == 200, resp
        assert len(resp.json()) == 3
        assert any(r["path"] == f"/repos/{repo}/issues" and r["auth"] for r in stack.demo.requests[before:])
        # another environment does not see it
        _, other_key = await stack.new_environment()
        async with stack.api(other_key) as other:
            with pytest.raises(Exception, match="unknown provider"):
                await other.create_integration("acme", "acme-git")
        # in use: refused; unknown: 404
        with pytest.raises(Exception, match=r"provider_in_use|used by"):
            await api.request("DELETE", "/providers/acme-git")
        await api.delete_integration("acme")
        assert (await api.request("DELETE", "/providers/acme-git"))["success"] is True
        with pytest.raises(Exception, match=r"unknown_provider|no custom provider"):
            await api.request("DELETE", "/providers/acme-git")
        with pytest.raises(Exception, match="not declared"):
            await api.request("POST", "/providers", json={**acme_provider(stack, "bad"), "connection_config": {}})


def integrations_folder(stack: Stack, tmp_path: Path, name: str) -> Path:
    """The example integration renamed after a custom provider declared in the folder's providers.yaml."""
    folder = tmp_path / "integrations"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("__pycache__", ".nango"))
    (folder / "github").rename(folder / name)
    text = (folder / "nango.yaml").read_text().replace("  github:\n", f"  {name}:\n", 1)
    (folder / "nango.yaml").write_text(text.replace("/github/issues", f"/{name}/issues"))
    body = acme_provider(stack, name)
    body.pop("name")
    (folder / "providers.yaml").write_text(yaml.safe_dump({name: body}))
    return folder


async def test_custom_provider_from_deploy_runs_a_sync(stack: Stack, tmp_path: Path) -> None:
    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"{env}/repo", 5)
    folder = integrations_folder(stack, tmp_path, "acme-git")
    flags = ["--server", stack.api_url, "--secret-key", key]
    run = await nango("deploy", str(folder), "--json", *flags)
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["providers"] == ["acme-git"]

    shown = await nango("providers", "show", "acme-git", "--json", *flags)
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["source"] == "custom"
    listed = await nango("providers", "list", *flags)
    assert any(line.split()[:3] == ["acme-git", "API_KEY", "custom"] for line in listed.stdout.splitlines())

    async with stack.api(key) as api:
        assert (await api.get_integration("acme-git"))["provider"] == "acme-git"
        await api.create_connection("acme-git", "c1", {"type": "API_KEY", "apiKey": "demo-token"},
                                    connection_config={"port": urlsplit(stack.provider_url).port},
                                    metadata={"repo": repo})

        async def synced() -> None:
            page = await api.request("GET", "/records", params={"model": "GithubIssue"},
                                     headers={"Connection-Id": "c1", "Provider-Config-Key": "acme-git"})
            assert len(page["records"]) == 5, page
        await eventually(synced, timeout=40)
    # the sync paged with the provider's default (link, per_page) and authenticated as the template says
    calls = [r for r in stack.demo.requests if r["path"] == f"/repos/{repo}/issues"]
    assert calls and all(r["auth"] and r["query"].get("per_page") == "100" for r in calls)


async def test_deploy_rejects_an_invalid_providers_yaml(stack: Stack, tmp_path: Path) -> None:
    _, key = await stack.new_environment()
    folder = integrations_folder(stack, tmp_path, "acme-git")
    (folder / "providers.yaml").write_text("acme-git:\n  display_name: A\n  auth_mode: API_KEY\n")
    run = await nango("deploy", str(folder), "--server", stack.api_url, "--secret-key", key)
    assert run.code != 0
    assert "provider 'acme-git' is invalid" in run.stderr and "base_url" in run.stderr


# ------------------------------------------------------------------------------------------------ CLI
async def test_cli_providers_local(tmp_path: Path) -> None:
    listed = await nango("providers", "list", "--local", "--json", cwd=tmp_path)
    assert listed.code == 0, listed.stderr
    names = {p["name"] for p in json.loads(listed.stdout)}
    assert {"github", "google-mail", "netsuite-tba", "wildix-pbx"} <= names
    shown = await nango("providers", "show", "shopify", "--local", cwd=tmp_path)
    assert shown.code == 0 and "base_url: https://${connectionConfig.subdomain}.myshopify.com" in shown.stdout
    missing = await nango("providers", "show", "nope", "--local", cwd=tmp_path)
    assert missing.code != 0 and "no provider 'nope'" in missing.stderr


# ------------------------------------------------------------------------------ Nango-format file
def nango_shaped(provider_url: str) -> dict:
    """A few entries in Nango's own providers.yaml shape (proxy.*, connection_config field objects)."""
    host = urlsplit(provider_url).hostname
    return {
        "acme-crm": {
            "display_name": "Acme CRM", "categories": ["crm"], "auth_mode": "OAUTH2",
            "authorization_url": "https://${connectionConfig.subdomain}.acme.test/oauth/authorize",
            "token_url": "https://${connectionConfig.subdomain}.acme.test/oauth/token",
            "scope_separator": ",", "default_scopes": ["contacts.read", "deals.read"],
            "authorization_params": {"access_type": "offline", "prompt": True},
            "token_response": {"token": "data.access_token"},
            "proxy": {"base_url": "https://api.acme.test/${connectionConfig.subdomain}/v2",
                      "headers": {"accept": "application/json"}, "retry": {"at": ["x-acme-reset"]},
                      "paginate": {"type": "cursor", "cursor_path_in_response": "meta.next",
                                   "cursor_name_in_request": "cursor", "response_path": "items",
                                   "limit_name_in_request": "limit"}},
            "connection_config": {"subdomain": {"type": "string", "title": "Subdomain",
                                                "description": "Your Acme workspace subdomain"}},
            "docs": "https://docs.acme.test/crm",
        },
        "acme-keys": {
            "display_name": "Acme Git (key)", "auth_mode": "API_KEY",
            "proxy": {"base_url": f"http://{host}:${{connectionConfig.port}}",
                      "headers": {"authorization": "token ${apiKey}", "accept": "application/json"},
                      "paginate": {"type": "link", "link_rel_in_response_header": "next",
                                   "limit_name_in_request": "per_page"}},
            "credentials": {"apiKey": {"type": "string", "title": "API key"}},
        },
        "acme-basic": {"display_name": "Acme Basic", "auth_mode": "BASIC",
                       "proxy": {"base_url": "https://basic.acme.test/api"}},
        "acme-basic-eu": {"alias": "acme-basic", "display_name": "Acme Basic (EU)",
                          "proxy": {"base_url": "https://eu.basic.acme.test/api"}, "some_future_field": {"x": 1}},
        "acme-two-step": {"display_name": "Acme Two Step", "auth_mode": "TWO_STEP",
                          "proxy": {"base_url": "https://two.acme.test"}},
        "anrok": {"display_name": "Anrok (operator's)", "auth_mode": "API_KEY",
                  "proxy": {"base_url": "https://api.anrok.com", "headers": {"authorization": "Bearer ${apiKey}"}}},
    }


async def test_a_nango_format_providers_file_loads_through_the_setting(
        stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(nango_shaped(stack.provider_url)))
    monkeypatch.setenv("PROVIDERS_FILE", str(path))
    builtin_providers.cache_clear()
    try:
        with caplog.at_level(logging.INFO):
            catalog = builtin_providers()
        assert "acme-two-step" not in catalog and len(catalog) >= 150
        assert "'acme-two-step' skipped: auth_mode 'TWO_STEP'" in caplog.text
        assert "token_response" in caplog.text and "some_future_field" in caplog.text

        env, key = await stack.new_environment()
        repo = stack.demo.add_repo(f"{env}/repo", 3)
        async with stack.api(key) as api:
            listed = {p["name"]: p for p in (await api.request("GET", "/providers"))["data"]}
            assert {"acme-crm", "acme-keys", "acme-basic", "acme-basic-eu", "github"} <= set(listed)
            assert "acme-two-step" not in listed and listed["anrok"]["display_name"] == "Anrok (operator's)"
            assert listed["acme-crm"]["source"] == listed["anrok"]["source"] == "operator"  # added, overridden
            assert listed["github"]["source"] == "builtin"
            crm = (await api.request("GET", "/providers/acme-crm"))["data"]
            assert (crm["auth_mode"], crm["scope_separator"], crm["default_scopes"]) == (
                "OAUTH2", ",", ["contacts.read", "deals.read"])
            assert crm["base_url"] == "https://api.acme.test/${connectionConfig.subdomain}/v2"
            assert crm["connection_config"] == {"subdomain": "Your Acme workspace subdomain"}
            assert crm["authorization_params"] == {"access_type": "offline", "prompt": "true"}
            assert crm["pagination"]["cursor_path_in_response"] == "meta.next"
            assert crm["rate_limit"]["reset_header"] == "x-acme-reset"
            assert crm["headers"] == {"accept": "application/json"}
            eu = (await api.request("GET", "/providers/acme-basic-eu"))["data"]
            assert (eu["auth_mode"], eu["base_url"]) == ("BASIC", "https://eu.basic.acme.test/api")
            keys = (await api.request("GET", "/providers/acme-keys"))["data"]
            assert (keys["api_key_header"], keys["api_key_template"]) == ("authorization", "token ${apiKey}")

            # usable: an integration on it reaches the provider with the key where the Nango entry put it
            await api.create_integration("acme", "acme-keys")
            await api.create_connection("acme", "c1", {"type": "API_KEY", "apiKey": "demo-token"},
                                        connection_config={"port": urlsplit(stack.provider_url).port})
            resp = await api.proxy("GET", f"/repos/{repo}/issues", integration="acme", connection_id="c1")
            assert resp.status == 200, resp
            assert len(resp.json()) == 3
    finally:
        monkeypatch.delenv("PROVIDERS_FILE")
        builtin_providers.cache_clear()
    assert "acme-crm" not in builtin_providers()


def test_a_nango_entry_that_cannot_convert_is_skipped_not_fatal(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({
        "no-proxy": {"display_name": "No proxy", "auth_mode": "API_KEY"},
        "bad-paginate": {"display_name": "Bad", "auth_mode": "API_KEY", "proxy": {
            "base_url": "https://bad.test", "paginate": {"type": "cursor"}}},
        "other-placeholder": {"display_name": "O", "auth_mode": "API_KEY",
                              "proxy": {"base_url": "https://x.test/bot${apiKey}"}},
        "oauth-no-token-url": {"display_name": "O", "auth_mode": "OAUTH2", "proxy": {"base_url": "https://o.test"}},
        "Not A Name": {"display_name": "N", "auth_mode": "BASIC", "proxy": {"base_url": "https://n.test"}},
    }))
    monkeypatch.setenv("PROVIDERS_FILE", str(path))
    builtin_providers.cache_clear()
    try:
        catalog = builtin_providers()
        assert "no-proxy" not in catalog and "other-placeholder" not in catalog
        assert "oauth-no-token-url" not in catalog and "Not A Name" not in catalog
        assert catalog["bad-paginate"].pagination == {}   # the unusable part is dropped, the provider kept
        monkeypatch.setenv("PROVIDERS_FILE", str(tmp_path / "missing.yaml"))
        builtin_providers.cache_clear()
        with pytest.raises(InvalidInputError, match=r"PROVIDERS_FILE .*missing\.yaml cannot be read"):
            builtin_providers()
    finally:
        monkeypatch.delenv("PROVIDERS_FILE")
        builtin_providers.cache_clear()


async def test_an_unreadable_providers_file_stops_the_api_and_the_worker_at_start(stack: Stack,
                                                                                   tmp_path: Path) -> None:
    """open_platform (the API's and the worker's start) reads PROVIDERS_FILE: a missing file is a clear error now,
    not at the first provider lookup of the first request or run."""
    settings = stack.settings.model_copy(update={"providers_file": str(tmp_path / "missing.yaml")})
    with pytest.raises(InvalidInputError, match=r"PROVIDERS_FILE .*missing\.yaml cannot be read"):
        async with open_platform(settings, temporal=stack.client):
            pass
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump({"acme-ok": {
        "display_name": "Acme", "auth_mode": "API_KEY", "proxy": {"base_url": "https://api.acme.test"}}}))
    ok = stack.settings.model_copy(update={"providers_file": str(tmp_path / "ok.yaml")})
    async with open_platform(ok, temporal=stack.client) as platform:
        assert platform.settings.providers_file.endswith("ok.yaml")


def test_how_long_a_rate_limited_call_waits_whatever_zone_the_provider_writes() -> None:
    """A reset time or an HTTP date without a zone is read as UTC (it was a TypeError, a 500 from /proxy)."""
    import time
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from orchestrator.providers.model import RateLimit
    from orchestrator.providers.proxy import _wait_from_headers

    iso = get_provider("github").model_copy(update={"rate_limit": RateLimit(
        reset_header="X-Reset", reset_format="iso", remaining_header="X-Remaining")})
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)
    for written in (at.isoformat(), at.replace(tzinfo=None).isoformat(), at.isoformat().replace("+00:00", "Z")):
        wait = _wait_from_headers({"X-Reset": written, "X-Remaining": "0"}, iso)
        assert wait is not None and 25 < wait <= 30, (written, wait)
    assert _wait_from_headers({"X-Reset": "soon", "X-Remaining": "0"}, iso) is None
    assert _wait_from_headers({"X-Reset": at.isoformat(), "X-Remaining": "7"}, iso) is None  # not exhausted

    github = get_provider("github")
    http_date = format_datetime(at.replace(tzinfo=None))  # "... -0000": no zone given
    wait = _wait_from_headers({"Retry-After": http_date}, github)
    assert wait is not None and 25 < wait <= 30, (http_date, wait)
    assert _wait_from_headers({"Retry-After": "12"}, github) == 12.0
    assert _wait_from_headers({"x-ratelimit-reset": str(int(time.time()) - 5), "x-ratelimit-remaining": "0"},
                              github) == 0.0


def test_values_filled_into_provider_urls_cannot_change_the_host() -> None:
    from orchestrator.providers.model import fill, fill_text

    sub = "https://${connectionConfig.subdomain}.bamboohr.com/token.php"
    assert fill(sub, {"subdomain": "acme-eu.1"}) == "https://acme-eu.1.bamboohr.com/token.php"
    for evil in ("evil.example#", "evil.example/x", "u@evil.example", "evil.example?", "evil.example\\", "..",
                 "a b", "%2F", ""):
        with pytest.raises(InvalidInputError, match=r"connection_config\.subdomain"):
            fill(sub, {"subdomain": evil})
    whole = "${connectionConfig.instance_url}/services/data"
    assert fill(whole, {"instance_url": "https://na1.salesforce.com"}) == "https://na1.salesforce.com/services/data"
    for evil in ("javascript:alert(1)", "//evil.example", "https://user@evil.example", "ftp://x", "https://"):
        with pytest.raises(InvalidInputError, match=r"connection_config\.instance_url"):
            fill(whole, {"instance_url": evil})
    # a JWT's own fields are not URLs: values go in as given
    assert fill_text("${connectionConfig.team} / ops", {"team": "a b#c"}) == "a b#c / ops"


async def test_a_providers_part_over_its_limit_is_refused_by_size(stack: Stack) -> None:
    """YAML parses slowly (a 3 MB part took 15 s, on the event loop): a providers file is capped, and named."""
    from orchestrator.api.deploy import MAX_PROVIDERS_BYTES
    from orchestrator.client.api import ApiError

    _, key = await stack.new_environment()
    huge = "# padding\n" * (MAX_PROVIDERS_BYTES // 10 + 1)
    async with stack.api(key) as api:
        with pytest.raises(ApiError) as caught:
            await api.deploy([], providers=huge)
    assert caught.value.status == 413 and "'providers' part" in caught.value.message, caught.value
