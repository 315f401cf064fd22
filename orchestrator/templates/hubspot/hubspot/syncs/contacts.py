"""HubSpot contacts: GET /crm/v3/objects/contacts (https://developers.hubspot.com/docs/api/crm/contacts).

Cursor pagination: `limit` (max 100) and `after`, the next cursor at `paging.next.after` (absent on the
last page); records under `results`. Only the properties asked for come back.
"""

from models import HubspotContact

from orchestrator.sdk import NangoSync

PROPERTIES = "email,firstname,lastname,company"


async def fetch_data(nango: NangoSync) -> None:
    total = 0
    async for page in nango.paginate("/crm/v3/objects/contacts", params={"properties": PROPERTIES, "limit": 100},
                                     type="cursor",
                                     cursor_path_in_response="paging.next.after", cursor_name_in_request="after",
                                     response_path="results", retries=5):
        contacts = [HubspotContact(
            id=str(raw["id"]), email=raw["properties"].get("email"), first_name=raw["properties"].get("firstname"),
            last_name=raw["properties"].get("lastname"), company=raw["properties"].get("company"),
            created_at=raw["createdAt"], updated_at=raw["updatedAt"]) for raw in page if not raw.get("archived")]
        await nango.batch_save(contacts, "HubspotContact")
        total += len(contacts)
    await nango.log(f"saved {total} contacts")
