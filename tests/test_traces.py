"""Traces (issue 20): real `nango server` and `nango worker` processes with OTEL_EXPORTER_OTLP_ENDPOINT set export
over OTLP HTTP/protobuf to a receiver in this test (an aiohttp app decoding opentelemetry-proto). An action asked
through the API and a sync started by its schedule are each one trace: API request -> workflow -> activity -> run ->
provider requests (and record writes); without the variable nothing is set up at all.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from orchestrator import tracing
from orchestrator.api.app import create_app
from orchestrator.authoring.compile import compile_project
from orchestrator.client import NangoClient
from orchestrator.temporal.client import tracing_interceptors
from tests.conftest import EXAMPLES, GithubSetup, Stack, eventually, serve, wait_for_job
from tests.test_faults import WorkerProcess
from tests.test_scale_out import _api_process


@dataclass
class Received:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """What an OTLP collector would get: every span of every export request, decoded."""

    spans: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            service = _attributes(resource.resource.attributes).get("service.name", "")
            for scope in resource.scope_spans:
                self.spans.extend(Received(service, s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                                           s.kind, _attributes(s.attributes), s.status.code) for s in scope.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def chain(self, leaf: Received) -> list[Received]:
        """The leaf and its ancestors, root first (a missing parent ends the walk)."""
        by_id = {s.span_id: s for s in self.spans}
        path = [leaf]
        while path[0].parent_id and path[0].parent_id in by_id:
            path.insert(0, by_id[path[0].parent_id])
        return path


def _attributes(pairs: Any) -> dict[str, Any]:
    def value(v: AnyValue) -> Any:
        return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return {kv.key: value(kv.value) for kv in pairs}


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", got.handle)
    async with serve(app) as url:
        yield got, url


async def test_an_action_and_a_scheduled_sync_are_each_one_trace(
        stack: Stack, receiver: tuple[Receiver, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got, endpoint = receiver
    # the processes' environment: the standard variables only, read by the SDK itself
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    prefix = f"tr{uuid.uuid4().hex[:6]}-"
    worker = WorkerProcess(stack, prefix, tmp_path, WORKER_TASK_QUEUES="syncs,actions",
                           OTEL_SERVICE_NAME="worker-under-test")
    api_proc, api_url = await _api_process(stack, tmp_path, prefix)
    try:
        await worker.start()
        env, key = await stack.new_environment()
        repo = stack.demo.add_repo(f"{env}/repo", 3)
        async with NangoClient(api_url, key) as api:
            await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
            # the schedule created here runs the sync once at once: started by Temporal, not by a client
            await api.create_connection("github", "c1", {"type": "OAUTH2", "access_token": "demo-token"},
                                        connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
            issue = await api.trigger_action("github", "c1", "create-issue", {"title": "traced"})
        assert issue["title"] == "traced"
        await wait_for_job(stack, GithubSetup(env, key, repo, "c1"))

        def runs(kind: str) -> list[Received]:
            return [s for s in got.spans if s.name == "script.run" and s.attributes.get("nango.environment") == env
                    and s.attributes.get("nango.kind") == kind]

        async def exported() -> None:  # each process exports its spans as they end, in batches
            assert runs("action") and runs("sync")
            for run in (*runs("action"), *runs("sync")):
                leaves = [s for s in got.spans if s.parent_id == run.span_id and s.kind == ProtoSpan.SPAN_KIND_CLIENT]
                assert leaves and got.chain(leaves[0])[0].name.startswith(("POST /", "StartActivity:")), "still coming"
            assert "RunActivity:finalize_sync" in {s.name for s in got.spans if s.trace_id == runs("sync")[0].trace_id}
        await eventually(exported, timeout=30)

        # the action: API request -> StartWorkflow -> workflow -> its (local) activity -> run -> provider request
        (action,) = runs("action")
        (post,) = [s for s in got.spans if s.parent_id == action.span_id and s.name == "POST"]
        path = got.chain(post)
        assert [s.name for s in path] == [
            "POST /action/trigger", "StartWorkflow:ActionWorkflow", "StartActivity:run_script_job",
            "RunActivity:run_script_job", "script.run", "POST"]
        assert {s.trace_id for s in path} == {path[0].trace_id}
        assert [s.service for s in path] == ["nango-api", "nango-api", *["worker-under-test"] * 4]
        # the workflow's own span (instant: the SDK's replay-safe mark) beside its activities, under the start
        (workflow,) = [s for s in got.spans if s.name == "RunWorkflow:ActionWorkflow" and s.trace_id == post.trace_id]
        assert workflow.parent_id == path[1].span_id
        request = path[0]
        assert request.kind == ProtoSpan.SPAN_KIND_SERVER and request.parent_id == ""
        assert request.attributes["http.route"] == "/action/trigger"
        assert request.attributes["http.response.status_code"] == 200
        assert post.attributes["http.request.method"] == "POST" and post.attributes["http.response.status_code"] == 201
        assert post.attributes["url.full"].startswith(stack.provider_url) and "?" not in post.attributes["url.full"]
        assert action.attributes["nango.integration"] == "github" and action.attributes["nango.script"]

        # the sync: schedule -> workflow (a root: no client started it) -> activity -> run -> requests and writes
        (sync,) = runs("sync")
        under = [s for s in got.spans if s.parent_id == sync.span_id]
        gets = [s for s in under if s.name == "GET"]
        saves = [s for s in under if s.name == "records.save"]
        assert gets and all(g.attributes["http.response.status_code"] == 200 for g in gets)
        async with stack.pool.acquire() as conn:  # 3 issues, and the action's own when the sync came after it
            stored = await conn.fetchval("SELECT count(*) FROM records r JOIN environments e ON e.id = r.environment_id"
                                         " WHERE e.name = $1", env)
        assert sum(s.attributes["nango.records"] for s in saves) == stored >= 3
        assert sum(s.attributes["nango.records.added"] for s in saves) == stored
        assert saves[0].attributes["nango.model"] == "GithubIssue"
        (workflow,) = [s for s in got.spans if s.name == "RunWorkflow:SyncWorkflow" and s.trace_id == sync.trace_id]
        for leaf in (gets[0], saves[0]):
            path = got.chain(leaf)
            assert [s.name for s in path] == [
                "StartActivity:run_sync_script", "RunActivity:run_sync_script", "script.run", leaf.name]
            # under the run's own parent (derived from its run id: no client started it), as the workflow's span is
            assert path[0].parent_id == workflow.parent_id != "" and {s.trace_id for s in path} == {sync.trace_id}
        in_trace = {s.name for s in got.spans if s.trace_id == sync.trace_id}
        assert {"RunActivity:prepare_sync", "RunActivity:finalize_sync"} <= in_trace  # the whole run, one trace
        assert not [s for s in got.spans if s.trace_id in (sync.trace_id, action.trace_id)
                    and s.status == Status.STATUS_CODE_ERROR]
    finally:
        await worker.stop()
        api_proc.terminate()
        await api_proc.wait()


async def test_without_the_variable_nothing_is_set_up(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's stack runs without OTEL_EXPORTER_OTLP_ENDPOINT, as a deployment that did not ask for traces."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"{env}/repo", 1)
    async with stack.api(key) as api:
        await api.deploy(await asyncio.to_thread(compile_project, EXAMPLES))
        await api.create_connection("github", "c1", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url}, metadata={"repo": repo})
        assert (await api.trigger_action("github", "c1", "create-issue", {"title": "untraced"}))["title"] == "untraced"
    await wait_for_job(stack, GithubSetup(env, key, repo, "c1"))
    # no SDK provider (nor the SDK itself), no interceptor, no middleware; call sites got the shared no-op span
    assert not tracing.active() and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert "opentelemetry.sdk.trace" not in sys.modules
    assert tracing_interceptors() == [] and tracing.worker_interceptors(stack.client) == []
    assert not [i for i in stack.client.config()["interceptors"] if "Tracing" in type(i).__name__]
    assert tracing.middleware not in create_app(stack.settings).middlewares
    with tracing.span("x") as span:
        assert not span.is_recording()
    assert tracing.setup("nango-api") is False and not tracing.active()
