"""Sync every issue of a GitHub repository (pull requests excluded), incrementally by `since`.

Try it: `nango dryrun issues <connection-id> --metadata '{"repo": "owner/name"}'`.
"""

from orchestrator.sdk import NangoSync

from ..mappers import to_issue


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
