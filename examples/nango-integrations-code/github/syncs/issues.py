"""Sync every issue of a GitHub repository (pull requests excluded), incrementally by `since`."""

from typing import Any

from models import GithubIssue

from orchestrator.sdk import NangoSync, sync


def to_issue(raw: dict[str, Any]) -> GithubIssue:
    return GithubIssue(
        id=str(raw["id"]),
        number=raw["number"],
        title=raw["title"],
        body=raw.get("body"),
        state=raw["state"],
        url=raw["html_url"],
        author=(raw.get("user") or {}).get("login"),
        labels=[label["name"] for label in raw.get("labels", [])],
        created_at=raw["created_at"],
        updated_at=raw["updated_at"],
        closed_at=raw.get("closed_at"),
    )


@sync(
    frequency="every 5 minutes",
    models=[GithubIssue],
    endpoints=["GET /github/issues"],
    sync_type="incremental",
    scopes=["repo"],
    description="All issues of the repository named in the connection's metadata (`repo`).",
    webhook_subscriptions=["issues"],
)
async def fetch_data(nango: NangoSync) -> None:
    metadata = await nango.get_metadata()
    repo = metadata.get("repo")
    if not repo:
        raise ValueError("set the connection's metadata 'repo' (owner/name) to choose the repository")
    params = {"state": "all", "sort": "updated", "direction": "asc"}
    if nango.last_sync_date:
        params["since"] = nango.last_sync_date.isoformat()
    saved = 0
    async for page in nango.paginate(f"/repos/{repo}/issues", params=params, limit=100, retries=5):
        issues = [to_issue(raw) for raw in page if "pull_request" not in raw]
        await nango.batch_save(issues, "GithubIssue")
        saved += len(issues)
    await nango.log(f"saved {saved} issues from {repo}")


async def on_webhook(nango: NangoSync, payload: dict[str, Any]) -> None:
    """GitHub `issues` events: apply the changed issue at once instead of waiting for the next run."""
    issue = payload.get("issue") if isinstance(payload, dict) else None
    if not issue or "pull_request" in issue:
        return
    if payload.get("action") == "deleted":
        await nango.batch_delete([{"id": str(issue["id"])}], "GithubIssue")
        return
    await nango.batch_save([to_issue(issue)], "GithubIssue")
