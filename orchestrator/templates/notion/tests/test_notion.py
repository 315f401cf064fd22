"""Offline tests of the Notion template (saved responses in notion/mocks/)."""


def test_pages_match_saved_run(nango_mock):
    nango_mock.assert_matches_saved("pages", integration="notion")


def test_pages_cursor_in_body_and_titles(nango_mock):
    result = nango_mock.run("pages", integration="notion").assert_ok()
    result.assert_saved("NotionPage", {"id": "p-1", "title": "Team handbook", "parent_type": "workspace"},
                        {"id": "p-3", "archived": True}, count=3)
    assert result.mock.requests[1].body["start_cursor"] == "c-2"
