"""Prometheus metrics (issue 20): the API's GET /metrics and the worker's health port, scraped by a real Prometheus
(Debian's `prometheus`, started here against a scrape config written here), and the figures are exactly what the
test made happen in its own environment: a sync that saves records, an action that succeeds and one that fails,
a proxied request answered 429 then 200 on its retry, result and auth webhooks, a token refresh that works and one
the provider refuses, a records page served. Without the binary the exposition is parsed with prometheus-client's
parser instead (the skip notice says so).

In the test stack the API and a worker share one process, so the API's /metrics carries the worker's run figures
too (in production each process exposes its own and Prometheus sums them); a real `nango worker` process with a
health port shows the Temporal SDK's own metrics (`temporal_*`) folded into its /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api.app import create_app
from orchestrator.authoring.compile import compile_project
from orchestrator.client.api import ApiError
from orchestrator.devstack.processes import free_port, wait_for_port
from tests.conftest import EXAMPLES, GithubSetup, Stack, allow_egress, eventually, serve_post, wait_for_job
from tests.test_faults import WorkerProcess

PROMETHEUS = shutil.which("prometheus")
ISSUES = 5


class Figures:
    """Sums of one metric's samples over the labels asked, per scrape job (`api` or `worker`): through a real
    Prometheus' query API, or (without the binary) by parsing the targets' exposition directly."""

    def __init__(self, targets: dict[str, str], prometheus: str | None) -> None:
        self.targets = targets  # job -> metrics URL
        self.prometheus = prometheus

    async def value(self, name: str, job: str = "api", **labels: str) -> float:
        async with aiohttp.ClientSession() as session:
            if self.prometheus is None:
                async with session.get(self.targets[job]) as resp:
                    text = await resp.text()
                return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
                           if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
            selector = ",".join([f'__name__="{name}"', f'job="{job}"', *(f'{k}="{v}"' for k, v in labels.items())])
            async with session.get(f"{self.prometheus}/api/v1/query", params={"query": f"sum({{{selector}}})"}) as resp:
                body = await resp.json()
            assert body["status"] == "success", body
            result = body["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

    async def names(self, job: str) -> set[str]:
        """The metric names a job's target exposes (as Prometheus last scraped them, or as served now)."""
        async with aiohttp.ClientSession() as session:
            if self.prometheus is None:
                async with session.get(self.targets[job]) as resp:
                    return {s.name for f in text_string_to_metric_families(await resp.text()) for s in f.samples}
            async with session.get(f"{self.prometheus}/api/v1/label/__name__/values",
                                   params={"match[]": f'{{job="{job}"}}'}) as resp:
                return set((await resp.json())["data"])


@contextlib.asynccontextmanager
async def prometheus(targets: dict[str, str], tmp: Path) -> AsyncIterator[str | None]:
    """A real Prometheus scraping `targets` every second (its base URL), or None where the binary is absent."""
    if PROMETHEUS is None:
        warnings.warn("Debian's prometheus is not installed (make test installs it): the figures are read by "
                      "parsing /metrics with prometheus_client.parser instead of a real scrape", stacklevel=2)
        yield None
        return
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [
        {"job_name": job, "metrics_path": "/metrics",
         "static_configs": [{"targets": [url.split("//", 1)[1].split("/", 1)[0]]}]} for job, url in targets.items()]}
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", stdout=log, stderr=log)
    log.close()
    try:
        await wait_for_port("127.0.0.1", port, 30, proc, what="prometheus")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


def _oauth(token: dict[str, Any], refresh_token: str | None = None) -> dict[str, Any]:
    """OAuth2 credentials that expire in 5 minutes: the next use refreshes them."""
    return {"type": "OAUTH2", "access_token": token["access_token"],
            "refresh_token": refresh_token or token["refresh_token"],
            "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}


async def test_metrics_count_what_happened_in_the_environment(stack: Stack, tmp_path: Path) -> None:
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:  # the customer's app: takes sync results, not auth events
        kind = (await request.json())["type"]
        received.append(kind)
        return web.Response(status=200 if kind == "sync" else 400)

    # a real `nango worker` on queues of its own (no run of this test reaches it): its /metrics and the SDK's
    worker_port = free_port()
    worker = WorkerProcess(stack, f"m{uuid.uuid4().hex[:6]}-", tmp_path, WORKER_HEALTH_PORT=str(worker_port),
                           API_HOST="127.0.0.1")
    starting = asyncio.create_task(worker.start())
    targets = {"api": f"{stack.api_url}/metrics", "worker": f"http://127.0.0.1:{worker_port}/metrics"}
    env, key = await stack.new_environment()
    try:
        async with serve_post("/hook", hook) as hook_url, allow_egress(stack, hook_url), \
                prometheus(targets, tmp_path) as prom, stack.api(key) as api:
            await api.update_environment(webhook_url=hook_url, on_auth_creation=True, on_auth_refresh_error=False)
            await api.create_integration("gh-oauth", "github", client_id=stack.demo.client_id,
                                         client_secret=stack.demo.client_secret)
            repo = stack.demo.add_repo(f"{env}/repo", ISSUES)
            await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
            await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
            await wait_for_job(stack, GithubSetup(env, key, repo, "conn-1"))  # the schedule's first run

            await api.trigger_action("github", "conn-1", "create-issue", {"title": "counted"})
            with pytest.raises(ApiError):  # the script refuses an empty title: a failed run
                await api.trigger_action("github", "conn-1", "create-issue", {"title": " "})
            stack.demo.fail_next(1, 429, retry_after=0, path_prefix="/user")
            assert (await api.proxy("GET", "/user", integration="github", connection_id="conn-1",
                                    retries=2)).status == 200
            page = await api.list_records("github", "conn-1", "GithubIssue")
            assert len(page["records"]) == ISSUES

            config = {"base_url": stack.provider_url, "token_url": f"{stack.provider_url}/login/oauth/access_token"}
            await api.create_connection("gh-oauth", "fresh", _oauth(stack.demo.issue_token()),
                                        connection_config=config)
            await api.create_connection("gh-oauth", "refused", _oauth(stack.demo.issue_token(), "ghr_unknown"),
                                        connection_config=config)
            assert (await api.proxy("GET", "/user", integration="gh-oauth", connection_id="fresh")).status == 200
            with pytest.raises(ApiError):  # the provider refuses the refresh token
                await api.proxy("GET", "/user", integration="gh-oauth", connection_id="refused")

            async def delivered() -> None:
                assert sorted(received) == ["auth", "auth", "auth", "sync"], received
            await eventually(delivered, timeout=20)
            await starting

            figures = Figures(targets, prom)
            e = {"environment": env}
            expected = [
                ("nango_runs_started_total", {**e, "integration": "github", "kind": "sync"}, 1),
                ("nango_runs_finished_total", {**e, "kind": "sync", "status": "success"}, 1),
                ("nango_runs_started_total", {**e, "kind": "action"}, 2),
                ("nango_runs_finished_total", {**e, "kind": "action", "status": "success"}, 1),
                ("nango_runs_finished_total", {**e, "kind": "action", "status": "failed"}, 1),
                ("nango_runs_finished_total", {**e, "status": "cancelled"}, 0),
                ("nango_run_duration_seconds_count", {**e, "kind": "sync"}, 1),
                ("nango_run_duration_seconds_count", {**e, "kind": "action"}, 2),
                ("nango_records_changed_total", {**e, "integration": "github", "change": "added"}, ISSUES),
                ("nango_records_changed_total", {**e, "change": "deleted"}, 0),
                ("nango_records_api_rows_total", e, ISSUES),
                ("nango_records_api_duration_seconds_count", e, 1),
                ("nango_script_rpc_calls_total", {**e, "method": "batch_save", "outcome": "ok"}, 1),
                ("nango_script_rpc_calls_total", {**e, "method": "get_metadata", "outcome": "ok"}, 3),
                ("nango_script_rpc_calls_total", {**e, "method": "http", "outcome": "ok"}, 2),
                ("nango_script_rpc_calls_total", {**e, "outcome": "error"}, 0),
                ("nango_provider_requests_total", {**e, "integration": "github", "status": "429"}, 1),
                ("nango_provider_requests_total", {**e, "integration": "github", "status": "200"}, 2),
                ("nango_provider_requests_total", {**e, "integration": "github", "status": "201"}, 1),
                ("nango_provider_retries_total", {**e, "status": "429"}, 1),
                ("nango_provider_requests_total", {**e, "integration": "gh-oauth", "status": "200"}, 1),
                ("nango_webhook_deliveries_total", {**e, "kind": "sync", "outcome": "delivered"}, 1),
                ("nango_webhook_deliveries_total", {**e, "kind": "auth", "outcome": "failed"}, 3),
                ("nango_webhook_deliveries_total", {**e, "kind": "auth", "outcome": "delivered"}, 0),
                ("nango_token_refreshes_total", {**e, "integration": "gh-oauth", "outcome": "refreshed"}, 1),
                ("nango_token_refreshes_total", {**e, "integration": "gh-oauth", "outcome": "refused"}, 1),
                ("nango_worker_slots_in_use", {**e, "kind": "sync"}, 0),
            ]

            async def scraped() -> None:
                got = [(name, labels, await figures.value(name, **labels)) for name, labels, _ in expected]
                assert got == [(n, labels, float(v)) for n, labels, v in expected]
                assert "nango_worker_slots_in_use" in await figures.names("api")  # present though 0
                worker_names = await figures.names("worker")
                assert {"temporal_num_pollers", "process_cpu_seconds_total"} <= worker_names, sorted(worker_names)
            await eventually(scraped, timeout=20, interval=0.5)
    finally:
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await worker.stop()


async def test_metrics_are_public_hold_no_secret_and_can_be_switched_off(stack: Stack) -> None:
    _env, key = await stack.new_environment()
    async with aiohttp.ClientSession() as session, session.get(f"{stack.api_url}/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        body = await resp.text()
    assert "nango_runs_finished_total" in body or "# HELP nango_runs_finished_total" in body
    families = {f.name for f in text_string_to_metric_families(body)}
    assert {"nango_runs_started", "nango_provider_requests", "process_cpu_seconds"} <= families
    settings = stack.settings
    for secret in (key, settings.encryption_key.get_secret_value(), settings.database_url.get_secret_value()):
        assert secret not in body
    off = settings.model_copy(update={"metrics_enabled": False})
    async with TestClient(TestServer(create_app(off, temporal=stack.client))) as client:
        assert (await client.get("/metrics")).status == 404
