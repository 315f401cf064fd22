"""Offline tests of the GitHub template (saved responses in github/mocks/)."""


def test_issues_match_saved_run(nango_mock):
    nango_mock.assert_matches_saved("issues", integration="github")


def test_issues_follow_link_pages_and_skip_pull_requests(nango_mock):
    result = nango_mock.run("issues", integration="github").assert_ok()
    result.assert_saved("GithubIssue", {"number": 1, "author": "octocat"}, {"number": 3}, count=2)
    result.assert_requested("GET", "/repositories/1296269/issues")
    result.assert_logged("saved 2 issues from octocat/hello-world")


def test_incremental_run_sends_since(nango_mock):
    from datetime import UTC, datetime

    mock = nango_mock.mock(provider="github", metadata={"repo": "o/r"},
                           last_sync_date=datetime(2024, 5, 1, tzinfo=UTC))
    mock.respond("GET", "/repos/o/r/issues", [], query={"state": "all", "sort": "updated", "direction": "asc",
                                                        "since": "2024-05-01T00:00:00+00:00", "per_page": 100})
    nango_mock.run("issues", integration="github", mock=mock).assert_ok()
    mock.assert_saved("GithubIssue", count=0)


def test_create_issue(nango_mock):
    nango_mock.assert_matches_saved("create-issue", integration="github")
    mock = nango_mock.mock(kind="action", metadata={"repo": "o/r"})
    mock.respond("POST", "/repos/o/r/issues", body={"title": "Only a title"}, json={
        "id": 7, "number": 7, "title": "Only a title", "body": None, "state": "open",
        "html_url": "https://github.com/o/r/issues/7", "user": {"login": "me"}, "labels": [],
        "created_at": "2024-06-01T00:00:00Z", "updated_at": "2024-06-01T00:00:00Z", "closed_at": None})
    result = nango_mock.run("create-issue", integration="github", mock=mock, input={"title": "Only a title"})
    assert result.assert_ok().output["number"] == 7


def test_create_issue_without_repo_is_an_action_error(nango_mock):
    from orchestrator.sdk import ActionError

    mock = nango_mock.mock(kind="action")
    result = nango_mock.run("create-issue", integration="github", mock=mock, input={"title": "x"})
    assert not result.ok and "ActionError" in result.error and not mock.requests
    assert ActionError
