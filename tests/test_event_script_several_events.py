"""An event script listed under several events in nango.yaml runs on each of them, through the real stack."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import EXAMPLES, Stack, eventually, setup_github


async def test_a_script_under_two_events_runs_on_creation_and_on_deletion(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "ints"
    shutil.copytree(EXAMPLES, folder)
    text = (folder / "nango.yaml").read_text().replace("    actions:\n", (
        "    on-events:\n      post-connection-creation: [setup]\n"
        "      pre-connection-deletion: [setup]\n    actions:\n"), 1)
    (folder / "nango.yaml").write_text(text)
    (folder / "github/on-events").mkdir()
    (folder / "github/on-events/setup.py").write_text(
        "async def on_event(nango):\n    await nango.log('setup ran', level='info')\n")
    gh = await setup_github(stack, issues=1, folder=folder)
    async with stack.api(gh.key) as api:
        async def ran_on(events: list[str]) -> None:
            jobs = (await api.request("GET", "/jobs", params={"kind": "event"}))["jobs"]
            assert [(j["name"], j["status"]) for j in jobs] == [("setup", "success")] * len(events), jobs
            async with stack.pool.acquire() as conn:  # which event each run was for: the job's input
                inputs = await conn.fetch("SELECT input FROM jobs WHERE id = any($1::bigint[])",
                                          [j["id"] for j in jobs])
            assert sorted(r["input"]["event"] for r in inputs) == events

        await eventually(lambda: ran_on(["post-connection-creation"]), timeout=30)
        await api.request("DELETE", f"/connections/{gh.connection_id}", params={"provider_config_key": "github"})
        await eventually(lambda: ran_on(["post-connection-creation", "pre-connection-deletion"]), timeout=30)

        configs = await api.request("GET", "/scripts/config")
        listed = [(s["name"], s["event"]) for s in configs[0]["on-events"]]
        assert listed == [("setup", "post-connection-creation"), ("setup", "pre-connection-deletion")]
