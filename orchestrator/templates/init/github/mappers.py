"""Shared by the github scripts (imported relatively: `from ..mappers import to_issue`)."""

from models import GithubIssue


def to_issue(raw: dict) -> GithubIssue:
    """A GitHub API issue as the GithubIssue model of nango.yaml."""
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
