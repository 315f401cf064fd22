"""Slack members: GET /users.list (https://api.slack.com/methods/users.list).

Cursor pagination: `limit` and `cursor`, the next cursor at `response_metadata.next_cursor` (empty on
the last page); members under `members`. Slack answers errors with HTTP 200 and `"ok": false`.
"""

from models import SlackUser

from orchestrator.sdk import NangoSync


def check_ok(_cursor: object, response: object) -> None:
    body = getattr(response, "data", None) or {}
    if not body.get("ok", False):
        raise RuntimeError(f"Slack answered {body.get('error', 'an error')}")


async def fetch_data(nango: NangoSync) -> None:
    active, deleted = [], []
    # `limit` as a plain parameter: Slack may answer fewer members than asked before the last page
    async for page in nango.paginate("/users.list", params={"limit": 200}, type="cursor",
                                     cursor_path_in_response="response_metadata.next_cursor",
                                     cursor_name_in_request="cursor", response_path="members", retries=5,
                                     on_page=check_ok):
        for raw in page:
            profile = raw.get("profile") or {}
            user = SlackUser(id=raw["id"], name=raw["name"], real_name=profile.get("real_name") or raw.get("real_name"),
                             email=profile.get("email"), is_bot=bool(raw.get("is_bot")),
                             is_admin=bool(raw.get("is_admin")), time_zone=raw.get("tz"))
            (deleted if raw.get("deleted") else active).append(user)
    await nango.batch_save(active, "SlackUser")
    if deleted:
        await nango.batch_delete(deleted, "SlackUser")
    await nango.log(f"saved {len(active)} users, deleted {len(deleted)}")
