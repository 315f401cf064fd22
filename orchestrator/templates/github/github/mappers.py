"""GitHub REST objects -> models (https://docs.github.com/en/rest/issues/issues)."""

from typing import Any

from models import GithubIssue


def to_issue(raw: dict[str, Any]) -> GithubIssue:
    return GithubIssue(
        id=str(raw["id"]), number=raw["number"], title=raw["title"], body=raw.get("body"), state=raw["state"],
        url=raw["html_url"], author=(raw.get("user") or {}).get("login"),
        labels=[label["name"] for label in raw.get("labels", [])], created_at=raw["created_at"],
        updated_at=raw["updated_at"], closed_at=raw.get("closed_at"),
    )
