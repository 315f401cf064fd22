"""Issues of one repository (pull requests excluded): GET /repos/{owner}/{repo}/issues.

Pagination is GitHub's Link header (`rel="next"`), 100 per page; incremental runs send `since`
(issues updated at or after the last successful run).
"""

from orchestrator.sdk import NangoSync

from ..mappers import to_issue


async def fetch_data(nango: NangoSync) -> None:
    repo = (await nango.get_metadata()).get("repo")
    if not repo:
        raise ValueError("set the connection's metadata 'repo' (owner/name) to choose the repository")
    params = {"state": "all", "sort": "updated", "direction": "asc", "per_page": 100}
    if nango.last_sync_date:
        params["since"] = nango.last_sync_date.isoformat()
    saved = 0
    # no `limit`: pull requests count in a page, so a short page of issues is not the last one
    async for page in nango.paginate(f"/repos/{repo}/issues", params=params, type="link",
                                     link_rel_in_response_header="next", retries=5):
        issues = [to_issue(raw) for raw in page if "pull_request" not in raw]
        await nango.batch_save(issues, "GithubIssue")
        saved += len(issues)
    await nango.log(f"saved {saved} issues from {repo}")
