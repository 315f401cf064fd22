"""Failed-login throttling for the dashboard: guessing keys or the password gets slow, then refused."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class LoginThrottle:
    """At most `limit` failed attempts per client address within `window_s`; successes do not count."""

    def __init__(self, limit: int = 10, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self.clock()
        seen = self._failures.setdefault(client, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if not seen:
            self._failures.pop(client, None)
        return seen

    def blocked_for(self, client: str) -> float:
        """Seconds until this client may try again (0 when it may try now)."""
        seen = self._recent(client)
        if len(seen) < self.limit:
            return 0.0
        return max(0.0, self.window_s - (self.clock() - seen[0]))

    def failed(self, client: str) -> None:
        self._recent(client)
        self._failures.setdefault(client, deque()).append(self.clock())
