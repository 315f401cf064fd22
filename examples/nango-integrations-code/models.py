"""The models of the integrations, code-first (`nango export-yaml` writes them to nango.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Unknown keys are kept; attributes named differently from their key serialise by alias.
_config = ConfigDict(
    extra="allow", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, protected_namespaces=()
)


class CreateIssue(BaseModel):
    model_config = _config
    title: str
    body: str | None = None


class GithubIssue(BaseModel):
    model_config = _config
    id: str
    number: int
    title: str
    body: str | None
    state: str
    url: str
    author: str | None
    labels: list[str]
    created_at: str
    updated_at: str
    closed_at: str | None
