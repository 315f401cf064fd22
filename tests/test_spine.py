"""The spine, end to end through the real stack: nango.yaml -> bundle in S3 -> Temporal
schedule -> SyncWorkflow -> script in a child process -> records in PostgreSQL -> GET /records."""

from __future__ import annotations

from orchestrator.authoring.compile import compile_project
from orchestrator.temporal import names, schedules
from tests.conftest import EXAMPLES, Stack, eventually


async def test_sync_from_nango_yaml_to_records_api(stack: Stack) -> None:
    env, key = await stack.new_environment()
    repo = stack.demo.add_repo(f"spine/{env}", 25)
    async with stack.api(key) as api:
        result = await api.deploy(compile_project(EXAMPLES))
        assert result["applied"]
        assert sorted(result["integrations"][0]["added"]) == ["action:create-issue", "sync:issues"]
        await api.create_connection("github", "conn-1", {"type": "OAUTH2", "access_token": "demo-token"},
                                    connection_config={"base_url": stack.provider_url},
                                    metadata={"repo": repo})
        sid = names.sync_schedule_id(env, "github", "conn-1", "issues")
        view = await schedules.describe(stack.client, sid)
        assert view is not None and view.interval_s == 300 and not view.paused

        async def all_issues_arrive() -> list[dict]:
            records = await api.all_records("github", "conn-1", "GithubIssue", limit=10)
            assert len(records) == 25, len(records)
            return records

        records = await eventually(all_issues_arrive)
        assert {r["number"] for r in records} == set(range(1, 26))
        first = next(r for r in records if r["number"] == 3)
        assert first["title"] == "Issue 3"
        assert first["_nango_metadata"]["last_action"] == "ADDED"
        # records come in cursor order; the last one's cursor resumes after everything seen so far
        cursor_before = records[-1]["_nango_metadata"]["cursor"]

        stack.demo.update_issue(repo, 3, title="Issue 3, renamed upstream")
        await schedules.trigger(stack.client, sid)

        async def one_update() -> list[dict]:
            page = await api.list_records("github", "conn-1", "GithubIssue", cursor=cursor_before)
            assert len(page["records"]) == 1, page
            return page["records"]

        changed = await eventually(one_update)
        assert changed[0]["number"] == 3
        assert changed[0]["title"] == "Issue 3, renamed upstream"
        assert changed[0]["_nango_metadata"]["last_action"] == "UPDATED"
        updated = await api.list_records("github", "conn-1", "GithubIssue", filter="updated")
        assert [r["number"] for r in updated["records"]] == [3]
