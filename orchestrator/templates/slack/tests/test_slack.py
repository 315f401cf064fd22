"""Offline tests of the Slack template (saved responses in slack/mocks/)."""


def test_users_match_saved_run(nango_mock):
    nango_mock.assert_matches_saved("users", integration="slack")


def test_deleted_members_are_deleted(nango_mock):
    result = nango_mock.run("users", integration="slack").assert_ok()
    result.assert_saved("SlackUser", {"id": "U01", "is_admin": True}, {"id": "U02", "is_bot": True}, count=3)
    result.assert_deleted("SlackUser", {"id": "U04"}, count=1)


def test_ok_false_is_an_error(nango_mock):
    mock = nango_mock.mock(provider="slack").respond("GET", "/users.list", {"ok": False, "error": "invalid_auth"})
    result = nango_mock.run("users", integration="slack", mock=mock)
    assert not result.ok and "invalid_auth" in result.error
