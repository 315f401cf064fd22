"""Notion pages: POST /v1/search filtered on pages (https://developers.notion.com/reference/post-search).

Cursor pagination in the JSON body: `page_size` (max 100) and `start_cursor`, the next cursor at
`next_cursor` (null on the last page); results under `results`. Every request names the API version.
"""

from typing import Any

from models import NotionPage

from orchestrator.sdk import NangoSync

NOTION_VERSION = "2022-06-28"


def title_of(page: dict[str, Any]) -> str:
    for prop in (page.get("properties") or {}).values():
        if prop.get("type") == "title":
            return "".join(part.get("plain_text", "") for part in prop.get("title", []))
    return ""


async def fetch_data(nango: NangoSync) -> None:
    total = 0
    async for page in nango.paginate("/v1/search", method="POST",
                                     data={"filter": {"property": "object", "value": "page"}, "page_size": 100},
                                     headers={"Notion-Version": NOTION_VERSION}, type="cursor",
                                     cursor_path_in_response="next_cursor", cursor_name_in_request="start_cursor",
                                     response_path="results", retries=5):
        pages = [NotionPage(id=raw["id"], title=title_of(raw), url=raw["url"], parent_type=raw["parent"]["type"],
                            archived=bool(raw.get("archived")), created_time=raw["created_time"],
                            last_edited_time=raw["last_edited_time"]) for raw in page]
        await nango.batch_save(pages, "NotionPage")
        total += len(pages)
    await nango.log(f"saved {total} pages")
