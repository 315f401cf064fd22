"""Offline tests of the Linear template (saved responses in linear/mocks/)."""


def test_issues_match_saved_run(nango_mock):
    nango_mock.assert_matches_saved("issues", integration="linear")


def test_issues_follow_end_cursor(nango_mock):
    result = nango_mock.run("issues", integration="linear").assert_ok()
    result.assert_saved("LinearIssue", {"identifier": "ENG-1", "state": "Done", "assignee_id": "user-1"},
                        {"identifier": "ENG-2", "assignee_id": None}, count=3)
    assert [r.body["variables"]["after"] for r in result.mock.requests] == [None, "cursor-2"]


def test_incremental_filter(nango_mock):
    from datetime import UTC, datetime

    mock = nango_mock.mock(provider="linear", last_sync_date=datetime(2024, 5, 2, tzinfo=UTC))
    mock.respond("POST", "/graphql", {"data": {"issues": {"nodes": [], "pageInfo": {"hasNextPage": False}}}})
    nango_mock.run("issues", integration="linear", mock=mock).assert_ok()
    assert mock.requests[0].body["variables"]["filter"] == {"updatedAt": {"gt": "2024-05-02T00:00:00+00:00"}}
