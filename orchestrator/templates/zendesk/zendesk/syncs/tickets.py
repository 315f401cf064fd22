"""Zendesk tickets: GET /api/v2/incremental/tickets/cursor.json
(https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/).

The first request sends `start_time` (Unix seconds), later ones `cursor` (the previous `after_cursor`)
until `end_of_stream`. Deleted tickets come back with status "deleted".
"""

from typing import Any

from models import ZendeskTicket

from orchestrator.sdk import NangoSync


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


async def fetch_data(nango: NangoSync) -> None:
    start = int(nango.last_sync_date.timestamp()) if nango.last_sync_date else 0
    params: dict[str, Any] = {"start_time": start, "per_page": 1000}
    saved = deleted = 0
    while True:
        response = await nango.get("/api/v2/incremental/tickets/cursor.json", params=params, retries=5)
        body = response.data
        live = [t for t in body["tickets"] if t["status"] != "deleted"]
        gone = [{"id": str(t["id"])} for t in body["tickets"] if t["status"] == "deleted"]
        await nango.batch_save([ZendeskTicket(
            id=str(t["id"]), subject=t.get("subject"), description=t.get("description"), status=t["status"],
            priority=t.get("priority"), requester_id=_id(t.get("requester_id")),
            assignee_id=_id(t.get("assignee_id")), tags=t.get("tags") or [], created_at=t["created_at"],
            updated_at=t["updated_at"]) for t in live], "ZendeskTicket")
        if gone:
            await nango.batch_delete(gone, "ZendeskTicket")
        saved, deleted = saved + len(live), deleted + len(gone)
        if body.get("end_of_stream") or not body.get("after_cursor"):
            break
        params = {"cursor": body["after_cursor"], "per_page": 1000}
    await nango.log(f"saved {saved} tickets, deleted {deleted}")
