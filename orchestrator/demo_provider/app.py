"""A local stand-in for a slice of GitHub's REST API (issues, OAuth app flow, webhooks).

Integration scripts written against this app must work unchanged against api.github.com, so the
wire behaviour follows GitHub: paths, ``Link`` pagination headers, ``X-RateLimit-*`` headers, error
bodies (``{"message", "documentation_url", "status"}``), ``201`` + ``Location`` on create, ``410``
for a deleted issue, and signed ``issues`` webhook events. Everything lives in memory in a
:class:`DemoState`, which tests mutate directly or through the unauthenticated ``/_admin/`` routes.

Known, deliberate differences from GitHub (documented so nobody relies on them):
- every repository is private-like: API calls without a token answer ``401``;
- ``POST /login/oauth/access_token`` answers errors with ``401``/``400`` (GitHub answers ``200``
  with an ``error`` field, so OAuth clients must check that field on any status);
- ``POST /repos/{o}/{r}/issues`` also takes a form-encoded ``title``/``body``, the body OAuth 1.0a
  clients sign (GitHub only takes JSON);
- the API also accepts OAuth 1.0a, NetSuite TBA and JWT credentials (``auth_modes.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import secrets
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import structlog
from aiohttp import web

from orchestrator.demo_provider import auth_modes

log = structlog.get_logger(__name__)

DOCS = "https://docs.github.com/rest"
SEED_START = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_REPO = "demo/hello-world"
DEFAULT_LOGIN = "demo-user"
CODE_TTL_SECONDS = 600
REFRESH_TTL_SECONDS = 15_897_600  # GitHub's refresh_token_expires_in (about six months)
RATE_WINDOW_SECONDS = 3600
ISSUE_FIELDS = frozenset(
    {"title", "body", "state", "state_reason", "labels", "assignees", "user", "created_at", "updated_at",
     "closed_at"}
)
API_PATCH_FIELDS = frozenset({"title", "body", "state", "state_reason", "labels", "assignees"})


# --------------------------------------------------------------------------------------------- errors
class ApiError(Exception):
    """An error answered as JSON by the error middleware."""

    def __init__(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(payload.get("message") or payload.get("error") or str(status))
        self.status = status
        self.payload = payload
        self.headers = headers or {}


def _gh_error(status: int, message: str, doc: str = DOCS, **extra: Any) -> ApiError:
    return ApiError(status, {"message": message, "documentation_url": doc, "status": str(status), **extra})


class DemoNotFound(LookupError):
    """Unknown repository or issue (404)."""


class DemoGone(LookupError):
    """The issue existed and was deleted (410, as GitHub)."""


class DemoValidationError(ValueError):
    """Bad field value (422 Validation Failed)."""


# ---------------------------------------------------------------------------------------------- model
def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, field_name: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise DemoValidationError(f"{field_name}: invalid ISO 8601 timestamp {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def sign_webhook(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _label_names(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DemoValidationError("labels must be a list")
    names: list[str] = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise DemoValidationError("labels must be names or objects with a name")
        if name not in names:
            names.append(name)
    return names


def _logins(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DemoValidationError("assignees must be a list of logins")
    return list(dict.fromkeys(value))


@dataclass
class Issue:
    id: int
    number: int
    title: str
    body: str | None
    user: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    issues: dict[int, Issue] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class _Token:
    scope: str
    expires_at: float | None


@dataclass
class _Failure:
    remaining: int
    status: int
    retry_after: float | None
    body: str | None
    content_type: str | None
    path_prefix: str | None
    delay: float


@dataclass(frozen=True)
class WebhookEvent:
    event: str
    action: str
    payload: dict[str, Any]
    url: str
    secret: str


class DemoState:
    """In-memory data of the demo provider. Not thread-safe; use it from the event loop's thread."""

    def __init__(
        self,
        *,
        repos: dict[str, int] | None = None,
        seed_issues: int = 25,
        webhook_secret: str = "demo-webhook-secret",
        client_id: str = "demo-client-id",
        client_secret: str = "demo-client-secret",
        token_ttl_seconds: int = 3600,
        webhook_url: str | None = None,
        rate_limit: int = 5000,
        installation_id: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo_seeds: dict[str, int] = dict(repos) if repos is not None else {DEFAULT_REPO: seed_issues}
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_seconds = token_ttl_seconds
        self.rate_limit = rate_limit
        self.installation_id = installation_id
        self.clock = clock
        self.static_tokens: set[str] = {"demo-token"}
        self.tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Token] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.deny_next_authorization = False  # OAuth2's and OAuth 1.0a's next authorization is refused
        self.auth = auth_modes.AuthModes(self, login=DEFAULT_LOGIN)  # OAuth 1.0a, TBA, GitHub App, JWT
        self.base_url: str | None = None  # API origin, learnt from requests; used in webhook payloads
        self.requests: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self.users: dict[str, int] = {DEFAULT_LOGIN: 1}
        self.repos: dict[str, Repo] = {}
        self._failures: list[_Failure] = []
        self._subscribers: list[Callable[[WebhookEvent], None]] = []
        self.rate_remaining = rate_limit
        self.rate_reset = 0.0
        self._seed()

    # ------------------------------------------------------------------------------------ lifecycle
    def _seed(self) -> None:
        self.repos = {}
        self._next_issue_id = 1_000_001
        for full_name, count in self.repo_seeds.items():
            self._create_repo(full_name, count)

    def _create_repo(self, full_name: str, issues: int) -> None:
        """A repository with `issues` deterministic issues (issue n: "Issue n", created n-1 hours in)."""
        owner, _, name = full_name.partition("/")
        if not owner or not name:
            raise ValueError(f"repository names are 'owner/name', got {full_name!r}")
        repo = Repo(id=100_001 + len(self.repos), owner=owner, name=name)
        self.repos[full_name] = repo
        for n in range(1, issues + 1):
            at = SEED_START + timedelta(hours=n - 1)
            repo.issues[n] = Issue(
                id=self._take_issue_id(), number=n, title=f"Issue {n}", body=f"Body of issue {n}.",
                user=DEFAULT_LOGIN, created_at=at, updated_at=at,
                labels=["bug" if n % 2 == 0 else "enhancement"],
            )
        repo.next_number = issues + 1

    def add_repo(self, full_name: str, issues: int = 25) -> str:
        """A new seeded repository, so each test can sync data no other test touches."""
        if full_name in self.repos:
            raise ValueError(f"repository {full_name!r} exists")
        self._create_repo(full_name, issues)
        self.repo_seeds[full_name] = issues
        return full_name

    def reset(self) -> None:
        """Back to the seeded data; forget requests, deliveries, pending failures, codes and rate usage.

        Configuration (secrets, webhook URL) and tokens stay, so stored connections keep working."""
        self._seed()
        self.requests.clear()
        self.deliveries.clear()
        self._failures.clear()
        self.codes.clear()
        self.auth.reset()
        self.deny_next_authorization = False
        self.rate_remaining = self.rate_limit
        self.rate_reset = 0.0

    def _take_issue_id(self) -> int:
        issue_id = self._next_issue_id
        self._next_issue_id += 1
        return issue_id

    def now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock()), UTC)

    # --------------------------------------------------------------------------------------- tokens
    def issue_token(self, *, scopes: str = "repo", ttl_seconds: int | None = None) -> dict[str, Any]:
        """Mint an access token (and its refresh token), as GitHub's user-to-server tokens."""
        ttl = self.token_ttl_seconds if ttl_seconds is None else ttl_seconds
        access = "ghu_" + secrets.token_urlsafe(27)
        refresh = "ghr_" + secrets.token_urlsafe(54)
        now = self.clock()
        self.tokens[access] = _Token(scope=scopes, expires_at=now + ttl)
        self.refresh_tokens[refresh] = _Token(scope=scopes, expires_at=now + REFRESH_TTL_SECONDS)
        return {
            "access_token": access,
            "expires_in": ttl,
            "refresh_token": refresh,
            "refresh_token_expires_in": REFRESH_TTL_SECONDS,
            "token_type": "bearer",
            "scope": scopes,
        }

    def grant_token(self, token: str, *, scopes: str, ttl_seconds: int) -> None:
        """Accept `token` as a Bearer token for `ttl_seconds` (installation and JWT-exchange tokens)."""
        self.tokens[token] = _Token(scope=scopes, expires_at=self.clock() + ttl_seconds)

    def expire_token(self, token: str) -> None:
        """Make an issued access token expired now (static tokens are removed instead)."""
        self.static_tokens.discard(token)
        if token in self.tokens:
            self.tokens[token].expires_at = self.clock() - 1

    def token_valid(self, token: str) -> bool:
        if token in self.static_tokens:
            return True
        info = self.tokens.get(token)
        return info is not None and (info.expires_at is None or self.clock() < info.expires_at)

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """Rotate: the old refresh token stops working, a new pair is returned. ``None`` if invalid."""
        info = self.refresh_tokens.pop(refresh_token, None)
        if info is None or (info.expires_at is not None and self.clock() >= info.expires_at):
            return None
        return self.issue_token(scopes=info.scope)

    # ------------------------------------------------------------------------------------- failures
    def fail_next(
        self,
        n: int = 1,
        status: int | str = 429,
        retry_after: float | None = 1,
        *,
        body: str | None = None,
        content_type: str | None = None,
        path_prefix: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``n`` provider requests (optionally only those under ``path_prefix``) fail.

        ``status`` is an HTTP status (429 adds ``Retry-After`` and ``X-RateLimit-Remaining: 0``;
        500/502/503 answer a GitHub-like JSON error) or ``"garbage"``: 200 with a body that is not
        JSON although it claims to be. ``body`` replaces the default body, ``delay`` waits first."""
        if n <= 0:
            return
        if status == "garbage":
            code, body = 200, body if body is not None else "<html><body>Unicorn! {\"truncated"
            content_type = content_type or "application/json"
        else:
            code = int(status)
        self._failures.append(
            _Failure(n, code, retry_after, body, content_type, path_prefix, delay)
        )

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.path_prefix is None or path.startswith(failure.path_prefix):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    # ----------------------------------------------------------------------------------- rate limit
    def _rate_window(self) -> None:
        now = self.clock()
        if now >= self.rate_reset:
            self.rate_reset = math.ceil(now) + RATE_WINDOW_SECONDS
            self.rate_remaining = self.rate_limit

    def consume_rate(self) -> bool:
        """Count one authenticated call; ``False`` when the primary rate limit is exhausted."""
        self._rate_window()
        if self.rate_remaining <= 0:
            return False
        self.rate_remaining -= 1
        return True

    def set_rate_limit(self, *, remaining: int | None = None, reset_in: float | None = None) -> None:
        self._rate_window()
        if remaining is not None:
            self.rate_remaining = remaining
        if reset_in is not None:
            self.rate_reset = math.ceil(self.clock() + reset_in)

    def rate_headers(self) -> dict[str, str]:
        self._rate_window()
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_remaining, 0)),
            "X-RateLimit-Reset": str(int(self.rate_reset)),
            "X-RateLimit-Used": str(self.rate_limit - max(self.rate_remaining, 0)),
            "X-RateLimit-Resource": "core",
        }

    # ---------------------------------------------------------------------------------------- users
    def user_id(self, login: str) -> int:
        if login not in self.users:
            self.users[login] = max(self.users.values(), default=0) + 1
        return self.users[login]

    def render_user(self, login: str) -> dict[str, Any]:
        uid = self.user_id(login)
        return {
            "login": login, "id": uid, "node_id": base64.b64encode(f"04:User{uid}".encode()).decode(),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
            "url": f"{self._api()}/users/{login}", "html_url": f"https://github.com/{login}",
            "type": "User", "site_admin": False,
        }

    # ---------------------------------------------------------------------------------------- repos
    def _api(self) -> str:
        return self.base_url or "http://127.0.0.1"

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name]
        except KeyError:
            raise DemoNotFound(f"repository {full_name} not found") from None

    def render_repo(self, repo: Repo) -> dict[str, Any]:
        api = f"{self._api()}/repos/{repo.full_name}"
        return {
            "id": repo.id, "node_id": base64.b64encode(f"010:Repository{repo.id}".encode()).decode(),
            "name": repo.name, "full_name": repo.full_name, "private": True,
            "owner": self.render_user(repo.owner), "html_url": f"https://github.com/{repo.full_name}",
            "description": f"Demo repository {repo.full_name}", "fork": False, "url": api,
            "issues_url": api + "/issues{/number}", "default_branch": "main", "has_issues": True,
            "open_issues_count": sum(1 for i in repo.issues.values() if i.state == "open"),
            "created_at": iso(SEED_START), "updated_at": iso(SEED_START), "pushed_at": iso(SEED_START),
            "visibility": "private",
            "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
        }

    # --------------------------------------------------------------------------------------- issues
    def issue(self, full_name: str, number: int) -> Issue:
        repo = self.repo(full_name)
        if number in repo.deleted:
            raise DemoGone(f"issue {full_name}#{number} was deleted")
        try:
            return repo.issues[number]
        except KeyError:
            raise DemoNotFound(f"issue {full_name}#{number} not found") from None

    def get_issue(self, repo: str, number: int) -> dict[str, Any]:
        return self.render_issue(self.repo(repo), self.issue(repo, number))

    def render_label(self, repo: Repo, name: str) -> dict[str, Any]:
        label_id = zlib.crc32(f"{repo.full_name}:{name}".encode())
        color = f"{zlib.crc32(name.encode()) & 0xFFFFFF:06x}"
        return {
            "id": label_id, "node_id": base64.b64encode(f"05:Label{label_id}".encode()).decode(),
            "url": f"{self._api()}/repos/{repo.full_name}/labels/{name}", "name": name, "color": color,
            "default": name in ("bug", "enhancement"), "description": None,
        }

    def render_issue(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        api = f"{self._api()}/repos/{repo.full_name}"
        url = f"{api}/issues/{issue.number}"
        assignees = [self.render_user(a) for a in issue.assignees]
        return {
            "url": url, "repository_url": api, "labels_url": url + "/labels{/name}",
            "comments_url": url + "/comments", "events_url": url + "/events",
            "html_url": f"https://github.com/{repo.full_name}/issues/{issue.number}",
            "id": issue.id, "node_id": base64.b64encode(f"05:Issue{issue.id}".encode()).decode(),
            "number": issue.number, "title": issue.title, "user": self.render_user(issue.user),
            "labels": [self.render_label(repo, name) for name in issue.labels],
            "state": issue.state, "locked": False,
            "assignee": assignees[0] if assignees else None, "assignees": assignees,
            "milestone": None, "comments": 0,
            "created_at": iso(issue.created_at), "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at), "author_association": "OWNER", "active_lock_reason": None,
            "body": issue.body, "state_reason": issue.state_reason, "timeline_url": url + "/timeline",
        }

    def add_issue(self, repo: str, **fields: Any) -> dict[str, Any]:
        """Create an issue (as if opened on github.com): emits an ``opened`` webhook."""
        target = self.repo(repo)
        unknown = set(fields) - ISSUE_FIELDS
        if unknown:
            raise DemoValidationError(f"unknown issue fields: {sorted(unknown)}")
        number = target.next_number
        now = self.now()
        title = fields.get("title", f"Issue {number}")
        if not isinstance(title, str) or not title:
            raise DemoValidationError('"title" wasn\'t supplied.')
        created = parse_time(fields["created_at"], "created_at") if fields.get("created_at") else now
        issue = Issue(
            id=self._take_issue_id(), number=number, title=title, body=fields.get("body"),
            user=fields.get("user") or DEFAULT_LOGIN, created_at=created,
            updated_at=(parse_time(fields["updated_at"], "updated_at") if fields.get("updated_at")
                        else created),
            labels=_label_names(fields.get("labels")), assignees=_logins(fields.get("assignees")),
        )
        self.user_id(issue.user)
        target.issues[number] = issue
        target.next_number += 1
        self._emit(target, issue, "opened")
        if fields.get("state", "open") != "open":
            self._apply(target, issue, {"state": fields["state"], "state_reason": fields.get("state_reason")},
                        bump=False)
            if fields.get("closed_at"):
                issue.closed_at = parse_time(fields["closed_at"], "closed_at")
        return self.render_issue(target, issue)

    def update_issue(self, repo: str, number: int, **changes: Any) -> dict[str, Any]:
        """Change fields of an issue and bump ``updated_at`` to now (unless ``updated_at`` is given).

        Emits the webhook actions GitHub would: edited, labeled/unlabeled, assigned/unassigned,
        closed/reopened."""
        target = self.repo(repo)
        issue = self.issue(repo, number)
        unknown = set(changes) - ISSUE_FIELDS
        if unknown:
            raise DemoValidationError(f"unknown issue fields: {sorted(unknown)}")
        self._apply(target, issue, changes, bump=True)
        return self.render_issue(target, issue)

    def delete_issue(self, repo: str, number: int) -> None:
        """Delete an issue: later reads answer 410 Gone, and a ``deleted`` webhook is emitted."""
        target = self.repo(repo)
        issue = self.issue(repo, number)
        del target.issues[number]
        target.deleted.add(number)
        self._emit(target, issue, "deleted")

    def _apply(self, repo: Repo, issue: Issue, changes: dict[str, Any], *, bump: bool) -> None:
        # Validate everything first so a bad value changes nothing.
        new_state = changes.get("state")
        if new_state is not None and new_state not in ("open", "closed"):
            raise DemoValidationError(f"state must be open or closed, got {new_state!r}")
        reason = changes.get("state_reason")
        if reason is not None and reason not in ("completed", "not_planned", "reopened"):
            raise DemoValidationError(f"invalid state_reason {reason!r}")
        if "title" in changes and (not isinstance(changes["title"], str) or not changes["title"]):
            raise DemoValidationError("title must be a non-empty string")
        labels = _label_names(changes["labels"]) if "labels" in changes else None
        assignees = _logins(changes["assignees"]) if "assignees" in changes else None
        times = {k: parse_time(changes[k], k) for k in ("created_at", "updated_at") if changes.get(k)}
        closed_at = parse_time(changes["closed_at"], "closed_at") if changes.get("closed_at") else None

        actions: list[tuple[str, dict[str, Any]]] = []
        edits: dict[str, Any] = {}
        for key in ("title", "body"):
            if key in changes and changes[key] != getattr(issue, key):
                edits[key] = {"from": getattr(issue, key)}
                setattr(issue, key, changes[key])
        if edits:
            actions.append(("edited", {"changes": edits}))
        if labels is not None:
            added = [n for n in labels if n not in issue.labels]
            removed = [n for n in issue.labels if n not in labels]
            issue.labels = labels
            actions += [("labeled", {"label": self.render_label(repo, n)}) for n in added]
            actions += [("unlabeled", {"label": self.render_label(repo, n)}) for n in removed]
        if assignees is not None:
            added = [a for a in assignees if a not in issue.assignees]
            removed = [a for a in issue.assignees if a not in assignees]
            issue.assignees = assignees
            actions += [("assigned", {"assignee": self.render_user(a)}) for a in added]
            actions += [("unassigned", {"assignee": self.render_user(a)}) for a in removed]
        if changes.get("user"):
            issue.user = changes["user"]
        now = self.now()
        if new_state == "closed" and issue.state == "open":
            issue.state, issue.state_reason = "closed", reason or "completed"
            issue.closed_at = closed_at or now
            actions.append(("closed", {}))
        elif new_state == "open" and issue.state == "closed":
            issue.state, issue.state_reason, issue.closed_at = "open", "reopened", None
            actions.append(("reopened", {}))
        elif reason is not None and new_state is None:
            issue.state_reason = reason
        if closed_at is not None and issue.state == "closed":
            issue.closed_at = closed_at
        if "created_at" in times:
            issue.created_at = times["created_at"]
        if "updated_at" in times:
            issue.updated_at = times["updated_at"]
        elif bump:
            issue.updated_at = max(now, issue.updated_at)
        for action, extra in actions:
            self._emit(repo, issue, action, extra)

    # ------------------------------------------------------------------------------------- webhooks
    def _emit(self, repo: Repo, issue: Issue, action: str, extra: dict[str, Any] | None = None) -> None:
        url = self.webhook_url
        if not url:
            return
        payload: dict[str, Any] = {
            "action": action,
            "issue": self.render_issue(repo, issue),
            **(extra or {}),
            "repository": self.render_repo(repo),
            "sender": self.render_user(DEFAULT_LOGIN),
        }
        if self.installation_id is not None:
            payload["installation"] = {
                "id": self.installation_id,
                "node_id": base64.b64encode(f"023:Installation{self.installation_id}".encode()).decode(),
            }
        event = WebhookEvent("issues", action, payload, url, self.webhook_secret)
        if not self._subscribers:
            self.deliveries.append(_delivery_record(event, str(uuid.uuid4()), None, "no app is running"))
        for subscriber in list(self._subscribers):
            subscriber(event)


def _delivery_record(
    event: WebhookEvent, delivery_id: str, status: int | None, error: str | None
) -> dict[str, Any]:
    return {
        "id": delivery_id, "event": event.event, "action": event.action, "url": event.url,
        "status": status, "error": error, "payload": event.payload,
    }


# ------------------------------------------------------------------------------------------ app keys
STATE = web.AppKey("demo_state", DemoState)
WEBHOOK_QUEUE = web.AppKey("demo_webhook_queue", asyncio.Queue)
WEBHOOK_TASK = web.AppKey("demo_webhook_task", asyncio.Task)

routes = web.RouteTableDef()
admin_routes = web.RouteTableDef()


# ----------------------------------------------------------------------------------------- middleware
def _failure_response(state: DemoState, failure: _Failure) -> web.Response:
    headers: dict[str, str] = {}
    if failure.status == 200:
        return web.Response(
            status=200, body=(failure.body or "").encode(),
            content_type=(failure.content_type or "application/json").split(";")[0],
        )
    if failure.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(failure.retry_after))
    if failure.status in (403, 429):
        # What GitHub sends with a rate-limit error: nothing left until the reset time. Only on
        # this response: the injected failure does not use up the real (simulated) limit.
        limit = str(state.rate_limit)
        headers.update({
            "X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "0", "X-RateLimit-Used": limit,
            "X-RateLimit-Reset": str(math.ceil(state.clock() + (failure.retry_after or 1))),
        })
    if failure.body is not None:
        try:
            json.loads(failure.body)
            ctype = failure.content_type or "application/json"
        except ValueError:
            ctype = failure.content_type or "text/plain"
        return web.Response(status=failure.status, body=failure.body.encode(),
                            content_type=ctype.split(";")[0], headers=headers)
    if failure.status in (403, 429):
        message = "API rate limit exceeded for user ID 1."
        doc = DOCS + "/overview/rate-limits-for-the-rest-api"
    else:
        message = "Server Error" if failure.status >= 500 else "Request failed"
        doc = DOCS
    return web.json_response(
        {"message": message, "documentation_url": doc, "status": str(failure.status)},
        status=failure.status, headers=headers,
    )


def _is_tracked(path: str) -> bool:
    return not path.startswith("/_admin") and path != "/health"


@web.middleware
async def github_middleware(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Request log, injected failures, JSON errors and the rate-limit headers on every response."""
    state = request.app[STATE]
    origin = f"{request.scheme}://{request.host}"
    if state.base_url is None:
        state.base_url = origin
    entry: dict[str, Any] | None = None
    if _is_tracked(request.path):
        entry = {
            "method": request.method, "path": request.path, "query": dict(request.query),
            "auth": "Authorization" in request.headers, "auth_scheme": None, "status": None, "at": state.clock(),
        }
        state.requests.append(entry)
    response: web.StreamResponse
    try:
        failure = state._take_failure(request.path) if entry is not None else None
        if failure is not None:
            if failure.delay > 0:
                await asyncio.sleep(failure.delay)
            response = _failure_response(state, failure)
        else:
            response = await handler(request)
    except ApiError as exc:
        response = web.json_response(exc.payload, status=exc.status, headers=exc.headers)
    except DemoGone:
        response = web.json_response(
            {"message": "This issue was deleted", "documentation_url": DOCS + "/issues/issues#get-an-issue",
             "status": "410"}, status=410)
    except DemoNotFound:
        response = web.json_response(
            {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, status=404)
    except DemoValidationError as exc:
        response = web.json_response(
            {"message": "Validation Failed", "errors": [{"message": str(exc), "code": "invalid"}],
             "documentation_url": DOCS, "status": "422"}, status=422)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(state.rate_headers())
            raise
        response = web.json_response(
            {"message": exc.reason, "documentation_url": DOCS, "status": str(exc.status)}, status=exc.status)
    except Exception:
        log.exception("demo_provider_error", method=request.method, path=request.path)
        response = web.json_response(
            {"message": "Server Error", "documentation_url": DOCS, "status": "500"}, status=500)
    if _is_tracked(request.path):
        for key, value in state.rate_headers().items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("X-GitHub-Media-Type", "github.v3; format=json")
        response.headers.setdefault("X-GitHub-Api-Version-Selected", "2022-11-28")
        response.headers.setdefault("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper())
    if entry is not None:
        entry["status"] = response.status
        entry["auth_scheme"] = request.get(auth_modes.AUTH_SCHEME)
    return response


# ------------------------------------------------------------------------------------------- helpers
async def require_auth(request: web.Request, doc: str = DOCS) -> str:
    """Check the credential and count the call against the rate limit; returns the user's login.

    A Bearer/token token, else an OAuth 1.0a, TBA or JWT credential verified by `auth_modes`; the
    scheme it was accepted as goes into the request log (``auth_scheme``)."""
    state = request.app[STATE]
    header = request.headers.get("Authorization", "")
    if not header:
        raise _gh_error(401, "Requires authentication", doc)
    scheme, _, token = header.partition(" ")
    accepted: str | None = "bearer"
    if scheme.lower() not in ("bearer", "token") or not state.token_valid(token.strip()):
        try:
            accepted = await auth_modes.authenticate(request, state.auth)
        except auth_modes.AuthRefused as exc:
            raise _gh_error(401, f"Bad credentials: {exc}", doc) from None
        if accepted is None:
            raise _gh_error(401, "Bad credentials", doc)
    request[auth_modes.AUTH_SCHEME] = accepted
    if not state.consume_rate():
        raise _gh_error(
            403, "API rate limit exceeded for user ID 1.", DOCS + "/overview/rate-limits-for-the-rest-api"
        )
    return DEFAULT_LOGIN


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return default


def paginate(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """Slice ``items`` by ``per_page``/``page``; GitHub's ``Link`` header (prev, next, last, first)."""
    per_page = _int_param(request, "per_page", 30)
    per_page = 30 if per_page <= 0 else min(per_page, 100)
    page = max(_int_param(request, "page", 1), 1)
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    if last == 1 and page == 1:
        return chunk, {}
    url = request.url  # absolute, from the request's Host header

    def link(n: int, rel: str) -> str:
        return f'<{url.update_query(page=str(n))}>; rel="{rel}"'

    parts: list[str] = []
    if page > 1:
        parts.append(link(min(page - 1, last), "prev"))
    if page < last:
        parts.append(link(page + 1, "next"))
        parts.append(link(last, "last"))
    if page > 1:
        parts.append(link(1, "first"))
    return chunk, {"Link": ", ".join(parts)}


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise _gh_error(400, "Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise _gh_error(400, "Problems parsing JSON")
    return data


def _repo_name(request: web.Request) -> str:
    return f"{request.match_info['owner']}/{request.match_info['repo']}"


def _number(request: web.Request) -> int:
    try:
        return int(request.match_info["number"])
    except ValueError:
        raise DemoNotFound("issue not found") from None


# ------------------------------------------------------------------------------------------- API
@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.route("*", "/redirect-to")
async def redirect_to(request: web.Request) -> web.Response:
    """Answer with a redirect to `url` (status `status_code`, 302 by default), like httpbin's: how the
    egress tests check that every redirect hop is checked again."""
    target = request.query.get("url", "")
    status = _int_param(request, "status_code", 302)
    if not target or status not in (301, 302, 303, 307, 308):
        raise _validation_error("url", "url is required and status_code must be a redirect status")
    return web.Response(status=status, headers={"Location": target})


@routes.get("/user")
async def get_user(request: web.Request) -> web.Response:
    login = await require_auth(request, DOCS + "/users/users#get-the-authenticated-user")
    state = request.app[STATE]
    user = state.render_user(login)
    user.update({"name": "Demo User", "email": "demo-user@example.com", "created_at": iso(SEED_START)})
    return web.json_response(user)


@routes.get("/rate_limit")
async def rate_limit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    h = state.rate_headers()
    core = {"limit": int(h["X-RateLimit-Limit"]), "remaining": int(h["X-RateLimit-Remaining"]),
            "reset": int(h["X-RateLimit-Reset"]), "used": int(h["X-RateLimit-Used"])}
    return web.json_response({"resources": {"core": core}, "rate": core})


@routes.get("/user/repos")
async def list_user_repos(request: web.Request) -> web.Response:
    await require_auth(request)
    state = request.app[STATE]
    items = [state.render_repo(r) for r in state.repos.values()]
    chunk, headers = paginate(request, items)
    return web.json_response(chunk, headers=headers)


@routes.get("/repos/{owner}/{repo}")
async def get_repo(request: web.Request) -> web.Response:
    await require_auth(request)
    state = request.app[STATE]
    return web.json_response(state.render_repo(state.repo(_repo_name(request))))


def _validation_error(field_name: str, message: str | None = None) -> ApiError:
    return _gh_error(
        422, "Validation Failed", DOCS + "/issues/issues#list-repository-issues",
        errors=[{"resource": "Issue", "field": field_name, "code": "invalid", **({"message": message}
                                                                               if message else {})}],
    )


@routes.get("/repos/{owner}/{repo}/issues")
async def list_issues(request: web.Request) -> web.Response:
    await require_auth(request, DOCS + "/issues/issues#list-repository-issues")
    state = request.app[STATE]
    repo = state.repo(_repo_name(request))
    q = request.query
    wanted = q.get("state", "open")
    if wanted not in ("open", "closed", "all"):
        raise _validation_error("state")
    sort = q.get("sort", "created")
    if sort not in ("created", "updated", "comments"):
        raise _validation_error("sort")
    direction = q.get("direction", "desc")
    if direction not in ("asc", "desc"):
        raise _validation_error("direction")
    issues = [i for i in repo.issues.values() if wanted == "all" or i.state == wanted]
    if q.get("since"):
        try:
            # GitHub compares at second precision.
            since = parse_time(q["since"], "since").replace(microsecond=0)
        except DemoValidationError as exc:
            raise _validation_error("since", str(exc)) from None
        issues = [i for i in issues if i.updated_at >= since]
    if q.get("labels"):
        required = [name.strip() for name in q["labels"].split(",") if name.strip()]
        issues = [i for i in issues if all(name in i.labels for name in required)]
    if q.get("creator"):
        issues = [i for i in issues if i.user == q["creator"]]
    if q.get("assignee") and q["assignee"] != "*":
        issues = [i for i in issues if q["assignee"] in i.assignees]

    def key(i: Issue) -> tuple[Any, int]:
        return (i.updated_at if sort == "updated" else i.created_at if sort == "created" else 0, i.number)

    issues.sort(key=key, reverse=direction == "desc")
    chunk, headers = paginate(request, issues)
    return web.json_response([state.render_issue(repo, i) for i in chunk], headers=headers)


@routes.get("/repos/{owner}/{repo}/issues/{number}")
async def get_issue(request: web.Request) -> web.Response:
    await require_auth(request, DOCS + "/issues/issues#get-an-issue")
    state = request.app[STATE]
    return web.json_response(state.get_issue(_repo_name(request), _number(request)))


@routes.post("/repos/{owner}/{repo}/issues")
async def create_issue(request: web.Request) -> web.Response:
    login = await require_auth(request, DOCS + "/issues/issues#create-an-issue")
    state = request.app[STATE]
    name = _repo_name(request)
    state.repo(name)
    if request.content_type == "application/x-www-form-urlencoded":  # what OAuth 1.0a clients sign (RFC 5849)
        body: dict[str, Any] = dict(await request.post())
    else:
        body = await _json_body(request)
    if not isinstance(body.get("title"), str) or not body["title"]:
        raise _gh_error(422, "Invalid request.\n\n\"title\" wasn't supplied.",
                        DOCS + "/issues/issues#create-an-issue")
    fields = {k: body[k] for k in ("title", "body", "labels", "assignees") if k in body}
    issue = state.add_issue(name, user=login, **fields)
    return web.json_response(issue, status=201, headers={"Location": issue["url"]})


@routes.patch("/repos/{owner}/{repo}/issues/{number}")
async def patch_issue(request: web.Request) -> web.Response:
    await require_auth(request, DOCS + "/issues/issues#update-an-issue")
    state = request.app[STATE]
    body = await _json_body(request)
    changes = {k: v for k, v in body.items() if k in API_PATCH_FIELDS}
    return web.json_response(state.update_issue(_repo_name(request), _number(request), **changes))


# ------------------------------------------------------------------------------------------ OAuth
def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@routes.get("/login/oauth/authorize")
async def oauth_authorize(request: web.Request) -> web.Response:
    """Auto-approves and redirects back with a single-use ``code`` (valid 10 minutes, as GitHub)."""
    state = request.app[STATE]
    q = request.query
    if q.get("client_id") != state.client_id:
        raise _gh_error(404, "Not Found: unknown client_id")
    redirect_uri = q.get("redirect_uri")
    if not redirect_uri or not urlsplit(redirect_uri).scheme:
        raise ApiError(400, {"error": "redirect_uri_mismatch",
                             "error_description": "The redirect_uri MUST match the registered callback URL."})
    params: dict[str, str] = {}
    if state.deny_next_authorization:
        state.deny_next_authorization = False
        params = {"error": "access_denied",
                  "error_description": "The user has denied your application access.",
                  "error_uri": DOCS + "/apps/troubleshooting-authorization-request-errors"}
    else:
        code = secrets.token_hex(10)
        scope = ",".join(s for s in q.get("scope", "").replace(",", " ").split() if s)
        state.codes[code] = {"client_id": state.client_id, "redirect_uri": redirect_uri, "scope": scope,
                             "expires_at": state.clock() + CODE_TTL_SECONDS}
        params["code"] = code
    if "state" in q:
        params["state"] = q["state"]
    return web.Response(status=302, headers={"Location": _with_query(redirect_uri, params)})


def _oauth_reply(request: web.Request, payload: dict[str, Any], status: int = 200) -> web.Response:
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(payload, status=status)
    body = urlencode({k: "" if v is None else str(v) for k, v in payload.items()})
    return web.Response(status=status, text=body, content_type="application/x-www-form-urlencoded")


def _oauth_error(request: web.Request, status: int, error: str, description: str) -> web.Response:
    return _oauth_reply(request, {
        "error": error, "error_description": description,
        "error_uri": DOCS + "/apps/troubleshooting-oauth-app-access-token-request-errors",
    }, status)


@routes.post("/login/oauth/access_token")
async def oauth_access_token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    params: dict[str, str] = dict(request.query)
    if request.content_type == "application/json":
        params.update({k: str(v) for k, v in (await _json_body(request)).items()})
    else:
        params.update({k: str(v) for k, v in (await request.post()).items()})
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("basic "):  # client_secret_basic, as many OAuth clients send it
        with contextlib.suppress(ValueError):
            cid, _, csecret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            params.setdefault("client_id", cid)
            params.setdefault("client_secret", csecret)
    if params.get("client_id") != state.client_id or params.get("client_secret") != state.client_secret:
        return _oauth_error(request, 401, "incorrect_client_credentials",
                            "The client_id and/or client_secret passed are incorrect.")
    grant = params.get("grant_type") or "authorization_code"
    if grant == "authorization_code":
        grant_info = state.codes.pop(params.get("code", ""), None)
        if grant_info is None or state.clock() >= grant_info["expires_at"]:
            return _oauth_error(request, 400, "bad_verification_code",
                                "The code passed is incorrect or expired.")
        if params.get("redirect_uri") and params["redirect_uri"] != grant_info["redirect_uri"]:
            return _oauth_error(request, 400, "redirect_uri_mismatch",
                                "The redirect_uri MUST match the registered callback URL.")
        return _oauth_reply(request, state.issue_token(scopes=grant_info["scope"]))
    if grant == "client_credentials":  # RFC 6749 4.4: a token for the client itself, no refresh token
        minted = state.issue_token(scopes=params.get("scope") or "repo")
        state.refresh_tokens.pop(minted.pop("refresh_token"), None)
        minted.pop("refresh_token_expires_in", None)
        return _oauth_reply(request, minted)
    if grant == "refresh_token":
        token = state.refresh(params.get("refresh_token", ""))
        if token is None:
            return _oauth_error(request, 400, "bad_refresh_token",
                                "The refresh token passed is incorrect or expired.")
        return _oauth_reply(request, token)
    return _oauth_error(request, 400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}.")


# ------------------------------------------------------------------------------------------ admin
def _admin_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})


@admin_routes.post("/_admin/issues")
async def admin_create_issue(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    repo = body.pop("repo", None) or next(iter(state.repos), DEFAULT_REPO)
    return web.json_response(state.add_issue(repo, **body), status=201)


@admin_routes.patch("/_admin/repos/{owner}/{repo}/issues/{number}")
async def admin_update_issue(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    return web.json_response(state.update_issue(_repo_name(request), _number(request), **body))


@admin_routes.delete("/_admin/repos/{owner}/{repo}/issues/{number}")
async def admin_delete_issue(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.delete_issue(_repo_name(request), _number(request))
    return web.Response(status=204)


@admin_routes.post("/_admin/tokens")
async def admin_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    ttl = body.get("ttl_seconds")
    if ttl is not None and not isinstance(ttl, int):
        raise _admin_error(400, "ttl_seconds must be an integer")
    token = state.issue_token(scopes=str(body.get("scopes", "repo")), ttl_seconds=ttl)
    return web.json_response(token, status=201)


@admin_routes.post("/_admin/tokens/expire")
async def admin_expire_token(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    state.expire_token(str(body.get("token", "")))
    return web.Response(status=204)


@admin_routes.post("/_admin/fail_next")
async def admin_fail_next(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    status: int | str = "garbage" if body.get("mode") == "garbage" else body.get("status", 429)
    try:
        state.fail_next(
            int(body.get("count", 1)), status, body.get("retry_after", 1),
            body=body.get("body"), content_type=body.get("content_type"),
            path_prefix=body.get("path_prefix"), delay=float(body.get("delay", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise _admin_error(400, str(exc)) from None
    return web.json_response({"pending": sum(f.remaining for f in state._failures)})


@admin_routes.post("/_admin/rate_limit")
async def admin_rate_limit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    state.set_rate_limit(remaining=body.get("remaining"), reset_in=body.get("reset_in"))
    return web.json_response(state.rate_headers())


@admin_routes.post("/_admin/webhook")
async def admin_webhook(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    state.webhook_url = body.get("url") or None
    if "secret" in body:
        state.webhook_secret = str(body["secret"])
    if "installation_id" in body:
        state.installation_id = body["installation_id"]
    return web.json_response({"url": state.webhook_url})


@admin_routes.get("/_admin/requests")
async def admin_requests(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].requests)


@admin_routes.get("/_admin/auth_log")
async def admin_auth_log(request: web.Request) -> web.Response:
    """The tracked requests a credential was accepted on, and as which scheme (bearer, oauth1, tba, jwt)."""
    return web.json_response([
        {k: e[k] for k in ("method", "path", "status", "auth_scheme")}
        for e in request.app[STATE].requests if e.get("auth_scheme")
    ])


@admin_routes.delete("/_admin/requests")
async def admin_clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


@admin_routes.get("/_admin/deliveries")
async def admin_deliveries(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].deliveries)


@admin_routes.post("/_admin/reset")
async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.Response(status=204)


# ---------------------------------------------------------------------------------------- webhooks
async def _deliver(state: DemoState, session: aiohttp.ClientSession, event: WebhookEvent) -> None:
    delivery_id = str(uuid.uuid4())
    body = json.dumps(event.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/demo",
        "X-GitHub-Event": event.event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "1",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": str(event.payload["repository"]["id"]),
    }
    if event.secret:
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(event.secret.encode(), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature-256"] = sign_webhook(event.secret, body)
    status: int | None = None
    error: str | None = None
    try:
        async with session.post(event.url, data=body, headers=headers) as resp:
            status = resp.status
            await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    state.deliveries.append(_delivery_record(event, delivery_id, status, error))
    log.info("demo_webhook_delivered", action=event.action, url=event.url, status=status, error=error)


async def _delivery_loop(
    state: DemoState, session: aiohttp.ClientSession, queue: asyncio.Queue[WebhookEvent]
) -> None:
    while True:
        event = await queue.get()
        try:
            await _deliver(state, session, event)
        finally:
            queue.task_done()


async def webhook_ctx(app: web.Application) -> AsyncIterator[None]:
    """Deliver webhook events in order from one background task; drain briefly, then cancel at cleanup."""
    state = app[STATE]
    queue: asyncio.Queue[WebhookEvent] = asyncio.Queue()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    state._subscribers.append(queue.put_nowait)
    app[WEBHOOK_QUEUE] = queue
    app[WEBHOOK_TASK] = asyncio.create_task(_delivery_loop(state, session, queue), name="demo-webhooks")
    try:
        yield
    finally:
        state._subscribers.remove(queue.put_nowait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), timeout=1.0)
        app[WEBHOOK_TASK].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[WEBHOOK_TASK]
        await session.close()


# ------------------------------------------------------------------------------------------ factory
def create_app(state: DemoState | None = None, *, webhook_url: str | None = None) -> web.Application:
    state = state if state is not None else DemoState()
    if webhook_url is not None:
        state.webhook_url = webhook_url
    app = web.Application(middlewares=[github_middleware])
    app[STATE] = state
    app[auth_modes.AUTH] = state.auth
    app.add_routes(routes)
    app.add_routes(auth_modes.routes)
    app.add_routes(admin_routes)
    app.add_routes(auth_modes.admin_routes)
    app.cleanup_ctx.append(webhook_ctx)
    return app


async def serve(host: str, port: int, state: DemoState | None = None) -> web.AppRunner:
    """Start the demo provider on ``host:port`` (port 0 picks a free one; see ``runner.addresses``).

    The caller owns the runner and must ``await runner.cleanup()``."""
    runner = web.AppRunner(create_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
