"""Offline tests of the Zendesk template (saved responses in zendesk/mocks/)."""


def test_tickets_match_saved_run(nango_mock):
    nango_mock.assert_matches_saved("tickets", integration="zendesk")


def test_tickets_export_until_end_of_stream(nango_mock):
    result = nango_mock.run("tickets", integration="zendesk").assert_ok()
    result.assert_saved("ZendeskTicket", {"id": "1", "assignee_id": "42", "tags": ["login"]}, {"id": "4"}, count=3)
    result.assert_deleted("ZendeskTicket", {"id": "3"}, count=1)
    result.assert_logged("saved 3 tickets, deleted 1")


def test_incremental_start_time(nango_mock):
    from datetime import UTC, datetime

    mock = nango_mock.mock(provider="zendesk", last_sync_date=datetime(2024, 3, 1, tzinfo=UTC))
    mock.respond("GET", "/api/v2/incremental/tickets/cursor.json", {"tickets": [], "end_of_stream": True},
                 query={"start_time": 1709251200, "per_page": 1000})
    nango_mock.run("tickets", integration="zendesk", mock=mock).assert_ok()
