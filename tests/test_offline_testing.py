"""Saved responses: `dryrun --save-responses` against the real stack, then `nango test` offline, its diff,
an unexpected request, redaction; and `NangoMock` on its own."""

from __future__ import annotations

import json

import pytest

from orchestrator.testing import NangoMock
from orchestrator.testing.mocks import HttpRecorder, redact_headers, redact_query
from tests.conftest import Stack
from tests.test_cli_stack import Project, connect, nango, project  # noqa: F401  (fixture)


async def test_save_responses_then_test_offline(stack: Stack, project: Project) -> None:  # noqa: F811
    deployed = await nango("deploy", str(project.folder), *project.flags())
    assert deployed.code == 0, deployed.stderr
    repo = stack.demo.add_repo(f"{project.env}/saved", 5)
    await connect(stack, project, repo)
    run = await nango("dryrun", "issues", "c1", "--save-responses", "--path", str(project.folder), *project.flags())
    assert run.code == 0, run.stderr
    mocks = project.folder / "github" / "mocks" / "issues"
    assert "nango test issues" in run.stderr
    http = json.loads((mocks / "http.json").read_text())
    assert http and http[0]["method"] == "GET" and http[0]["path"].endswith(f"/repos/{repo}/issues")
    assert {"method", "path", "query", "body", "status", "headers", "response"} <= set(http[0])
    assert all(e["status"] == 200 for e in http)
    for file in mocks.iterdir():
        assert "demo-token" not in file.read_text(), file
    records = json.loads((mocks / "records.json").read_text())
    assert len(records["GithubIssue"]["save"]) == 5
    assert json.loads((mocks / "run.json").read_text())["metadata"] == {"repo": repo}

    # offline: no server flags, found from a subfolder
    passed = await nango("test", cwd=project.folder / "github")
    assert passed.code == 0, passed.stdout + passed.stderr
    assert "PASS github/issues" in passed.stdout

    # the script changed: a readable diff of the records
    script = project.folder / "github" / "syncs" / "issues.py"
    original = script.read_text()
    script.write_text(original.replace("await nango.batch_save(issues,",
                                       "issues = [i.model_copy(update={'title': 'X'}) for i in issues]\n"
                                       "        await nango.batch_save(issues,"))
    failed = await nango("test", "issues", "--path", str(project.folder))
    assert failed.code == 1
    assert "FAIL github/issues" in failed.stdout and "--- saved records" in failed.stdout
    lines = [line.strip() for line in failed.stdout.splitlines()]
    assert any(line.startswith("+") and '"title": "X"' in line for line in lines), failed.stdout
    assert any(line.startswith("-") and '"title": "Issue 1' in line for line in lines), failed.stdout

    # a request with no saved response fails naming it
    script.write_text(original)
    (mocks / "http.json").write_text(json.dumps([dict(http[0], path="/elsewhere")]))
    failed = await nango("test", "issues", "--path", str(project.folder), "--json")
    assert failed.code == 1
    report = json.loads(failed.stdout)["results"][0]
    assert "no saved response for GET" in report["error"] and f"/repos/{repo}/issues" in report["error"]


def test_redaction_by_name_and_value() -> None:
    headers = redact_headers({"Set-Cookie": "s=1", "X-Api-Key": "k", "X-RateLimit-Remaining": "10",
                              "Link": "<https://x/?token=supersecret>"}, ["supersecret"])
    assert headers == {"x-api-key": "***", "x-ratelimit-remaining": "10", "link": "<https://x/?token=***>"}
    assert redact_query({"access_token": "a", "page": "2"}, []) == {"access_token": "***", "page": "2"}
    recorder = HttpRecorder()
    recorder.redactor = lambda text: text.replace("tok-123", "***")
    assert recorder.redact({"a": ["tok-123"]}) == {"a": ["***"]}


async def test_nango_mock_inline_responses_and_assertions() -> None:
    mock = NangoMock(kind="sync", metadata={"team": "t1"}, records={"User": [{"id": "9", "name": "old"}]})
    mock.respond("GET", "/users", {"items": [{"id": 1}, {"id": 2}], "next": "c2"}, query={"limit": 2})
    mock.respond("GET", "/users", {"items": [{"id": 3}], "next": None}, query={"limit": 2, "cursor": "c2"})
    nango = mock.nango
    pages = [page async for page in nango.paginate("/users", type="cursor", cursor_path_in_response="next",
                                                    cursor_name_in_request="cursor", response_path="items",
                                                    limit=2, limit_name_in_request="limit")]
    assert pages == [[{"id": 1}, {"id": 2}], [{"id": 3}]]
    await nango.batch_save([{"id": 1, "name": "a"}], "User")
    await nango.batch_update([{"id": "9", "name": "new"}], "User")
    await nango.batch_delete([{"id": 2}], "User")
    assert await nango.get_records_by_id(["9", "1"], "User") == {"9": {"id": "9", "name": "new"},
                                                                 "1": {"id": 1, "name": "a"}}
    await nango.save_checkpoint({"cursor": "c2"})
    assert await nango.get_checkpoint() == {"cursor": "c2"}
    await nango.update_metadata({"seen": True})
    assert await nango.get_metadata() == {"team": "t1", "seen": True}
    await nango.log("done", level="warn")
    mock.assert_saved("User", {"name": "a"}, count=1)
    mock.assert_updated("User", {"id": "9"})
    mock.assert_deleted("User", count=1)
    mock.assert_logged("done", level="warn")
    mock.assert_all_responses_used()
    with pytest.raises(AssertionError, match="no record save"):
        mock.assert_saved("User", {"name": "zzz"})
    with pytest.raises(AssertionError, match="no log"):
        mock.assert_logged("absent")

    from orchestrator.sdk import HttpError, NangoError

    mock.respond("POST", "/fail", {"error": "nope"}, status=422)
    with pytest.raises(HttpError) as info:
        await nango.post("/fail", data={"a": 1})
    assert info.value.status == 422 and info.value.data == {"error": "nope"}
    with pytest.raises(NangoError, match="no saved response for GET /missing\\?x=1"):
        await nango.get("/missing", params={"x": 1})
    with pytest.raises(AssertionError, match="/missing"):
        mock.assert_no_unexpected_requests()
