"""Open an issue; the answer is the new issue in the sync's model."""

from models import CreateIssue, GithubIssue

from orchestrator.sdk import ActionError, NangoAction, action

from ..syncs.issues import to_issue


@action(
    name="create-issue",
    input=CreateIssue,
    output=GithubIssue,
    endpoint="POST /github/issues",
    scopes=["repo"],
    description="Open an issue in the repository named in the connection's metadata.",
)
async def run_action(nango: NangoAction, input: CreateIssue) -> GithubIssue:
    metadata = await nango.get_metadata()
    repo = metadata.get("repo")
    if not repo:
        raise ActionError({"message": "the connection has no 'repo' in its metadata"})
    if not input.title.strip():
        raise ActionError({"message": "title must not be empty", "field": "title"})
    response = await nango.post(f"/repos/{repo}/issues", data={"title": input.title, "body": input.body},
                                retries=3)
    return to_issue(response.data)
