"""Nango's end users and tags: who a connection was made for, kept on the connection and filterable.

A connect session (or a PATCH of the connection) names the end user, optionally their organization, and tags.
As in Nango, the end user's fields also become tags (`end_user_id`, `end_user_email`, `end_user_display_name`,
`organization_id`, `organization_display_name`) beside the end user's own tags and the session's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TAG_KEY = r"^[A-Za-z0-9_.:\-]{1,64}$"


class EndUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    email: str | None = Field(None, max_length=255)
    display_name: str | None = Field(None, max_length=255)
    tags: dict[str, str] | None = Field(None, max_length=64)


class Organization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    display_name: str | None = Field(None, max_length=255)


def stored(end_user: EndUser | None, organization: Organization | None) -> dict[str, Any] | None:
    """The connection's `end_user` as GET /connection shows it (None without one)."""
    if end_user is None:
        return None
    return {**end_user.model_dump(), "tags": end_user.tags or {},
            "organization": organization.model_dump() if organization else None}


def tags_for(end_user: EndUser | None, organization: Organization | None,
             tags: dict[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if end_user is not None:
        out.update({k: v for k, v in (("end_user_id", end_user.id), ("end_user_email", end_user.email),
                                      ("end_user_display_name", end_user.display_name)) if v})
        out.update(end_user.tags or {})
    if organization is not None:
        out.update({k: v for k, v in (("organization_id", organization.id),
                                      ("organization_display_name", organization.display_name)) if v})
    out.update(tags or {})
    return {k.lower(): v for k, v in out.items()}  # Nango's clients lower-case tag keys when they filter
