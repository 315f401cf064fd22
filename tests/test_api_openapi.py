"""The OpenAPI document: every route is in it, and a bounded schemathesis run from it finds no 500s.

A longer hunt: API_FUZZ_EXAMPLES=100 API_FUZZ_SEED=3 API_FUZZ_PHASES=examples,coverage,fuzzing pytest -k fuzzing
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import warnings
from pathlib import Path

import aiohttp
import pytest

from orchestrator.api.app import create_app
from orchestrator.api.openapi import build, canonical_path
from tests.conftest import Stack, setup_github

# Not part of the API: the dashboard's HTML pages and static files.
UNDOCUMENTED_PREFIXES: tuple[str, ...] = ("/static/", "/dashboard")
UNDOCUMENTED = {("GET", "/")}  # the dashboard's front page


def _registered(stack: Stack) -> set[tuple[str, str]]:
    app = create_app(stack.settings, temporal=stack.client)  # routes only; resources start on startup
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = canonical_path(route.resource.canonical if route.resource else "")
        # "*" is /v1/{tail}: the unified endpoints, documented per environment at /v1/openapi.json
        if route.method == "*" or path.startswith(UNDOCUMENTED_PREFIXES) or ("GET", path) in UNDOCUMENTED:
            continue
        found.add((route.method, path))
    # aiohttp adds HEAD next to every GET
    return {(m, p) for m, p in found if not (m == "HEAD" and ("GET", p) in found)}


async def test_every_route_is_in_the_openapi_document(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.api_url}/openapi.json") as resp:
        assert resp.status == 200  # public: no key needed
        served = await resp.json()
    assert served == build()
    assert served["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, item in served["paths"].items() for method in item}
    registered = _registered(stack)
    assert registered - documented == set(), "routes missing from orchestrator/api/openapi.py OPERATIONS"
    assert documented - registered == set(), "documented operations with no route"
    # request bodies and responses come from the pydantic models
    post = served["paths"]["/connections"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateConnectionBody"}
    schemas = served["components"]["schemas"]
    assert "connection_id" in schemas["CreateConnectionBody"]["properties"]
    assert set(schemas["ConnectionSummary"]["required"]) >= {"created", "connection_id", "provider_config_key"}
    assert served["paths"]["/health"]["get"]["security"] == []


@pytest.mark.skipif(not shutil.which("st", path=str(Path(sys.executable).parent)),
                    reason="schemathesis is not installed (pip install schemathesis)")
async def test_fuzzing_from_the_document_finds_no_server_errors(stack: Stack, tmp_path: Path) -> None:
    gh = await setup_github(stack, issues=2)
    exe = str(Path(sys.executable).parent / "st")
    args = [exe, "run", f"{stack.api_url}/openapi.json", "--header", f"Authorization: Bearer {gh.key}",
            "--checks", "not_a_server_error", "--phases", os.environ.get("API_FUZZ_PHASES", "examples,fuzzing"),
            "--max-examples", os.environ.get("API_FUZZ_EXAMPLES", "12"), "--seed", os.environ.get("API_FUZZ_SEED", "7"),
            "--workers", "2", "--request-timeout", "30", "--max-redirects", "0",
            "--suppress-health-check", "all", "--no-shrink", "--output-truncate", "false",
            # rotating the key under test would lock the fuzzer out (401s, not findings)
            "--exclude-path", "/environment/rotate-key"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1", "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(*args, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode == 0:
        return
    summary = text[text.rfind("SUMMARY"):]
    # schemathesis' own crashes (e.g. a Python AST recursion bug inside hypothesis) are not findings about us
    if "Failures:" not in summary and "Runtime Error" in summary and "Network Error" not in summary:
        warnings.warn(f"schemathesis itself failed: {summary[:2000]}", stacklevel=1)
        return
    failures = text[text.find("FAILURES"):] if "FAILURES" in text else text
    pytest.fail(failures[:12000])
