"""Open an issue in the connection's repository and return it.

Try it: `nango dryrun create-issue <connection-id> --input '{"title": "Hello"}'` (this one really
creates the issue: a dry run saves no records, but the API calls are real).
"""

from models import CreateIssueInput, GithubIssue

from orchestrator.sdk import ActionError, NangoAction

from ..mappers import to_issue


async def run_action(nango: NangoAction, input: CreateIssueInput) -> GithubIssue:
    repo = (await nango.get_metadata()).get("repo")
    if not repo:
        raise ActionError({"message": "set the connection's metadata 'repo' (owner/name) first"})
    # No retries: creating is not idempotent, a retried POST could open the issue twice.
    response = await nango.post(f"/repos/{repo}/issues", data=input.model_dump(exclude_none=True))
    await nango.log(f"created issue #{response.data['number']} in {repo}")
    return to_issue(response.data)
