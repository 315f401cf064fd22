"""Open an issue: POST /repos/{owner}/{repo}/issues (https://docs.github.com/en/rest/issues/issues#create-an-issue)."""

from models import GithubCreateIssueInput, GithubIssue

from orchestrator.sdk import ActionError, NangoAction

from ..mappers import to_issue


async def run_action(nango: NangoAction, input: GithubCreateIssueInput) -> GithubIssue:
    repo = (await nango.get_metadata()).get("repo")
    if not repo:
        raise ActionError({"message": "set the connection's metadata 'repo' (owner/name)"})
    body = {"title": input.title}
    if input.body is not None:
        body["body"] = input.body
    if input.labels:
        body["labels"] = input.labels
    response = await nango.post(f"/repos/{repo}/issues", data=body, retries=3)
    return to_issue(response.data)
