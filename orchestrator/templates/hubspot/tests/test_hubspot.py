"""Offline tests of the HubSpot template (saved responses in hubspot/mocks/)."""


def test_contacts_match_saved_run(nango_mock):
    nango_mock.assert_matches_saved("contacts", integration="hubspot")


def test_contacts_follow_the_after_cursor(nango_mock):
    result = nango_mock.run("contacts", integration="hubspot").assert_ok()
    result.assert_saved("HubspotContact", {"id": "101", "first_name": "Maria", "company": "HubSpot"},
                        {"id": "103", "email": "ds@example.com"}, count=3)
    assert [r.query.get("after") for r in result.mock.requests] == [None, "103"]
    result.assert_logged("saved 3 contacts")


def test_an_api_error_fails_the_sync(nango_mock):
    mock = nango_mock.mock(provider="hubspot")
    mock.respond("GET", "/crm/v3/objects/contacts", {"status": "error", "category": "EXPIRED_AUTHENTICATION"},
                 status=401)
    result = nango_mock.run("contacts", integration="hubspot", mock=mock)
    assert not result.ok and "401" in result.error
