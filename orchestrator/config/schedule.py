"""The `runs:` grammar of nango.yaml: Nango's phrases plus `ms`-style durations.

Nango feeds `runs` to the `ms` package after stripping "every ", with a few fixed phrases
("every half hour", ...) handled first. We accept the same texts, case-insensitively and with
any spacing, and turn them into a `timedelta` that becomes a Temporal schedule interval.
"""

from __future__ import annotations

import re
from datetime import timedelta

from orchestrator.errors import InvalidInputError

MIN_INTERVAL = timedelta(seconds=30)
# Temporal keeps an interval as a Go duration (at most ~292 years); ten years is longer than any sync needs
MAX_INTERVAL = timedelta(days=10 * 365.25)

ACCEPTED_FORMS = (
    "'every <number> <unit>' with unit s/sec/second, m/min/minute, h/hr/hour, d/day, w/week, "
    "month (30 days) or y/year (e.g. 'every 30min', 'every 2h', 'every 1d', 'every 5 minutes'), "
    "or 'every half hour', 'every quarter hour', 'every half day', 'every hour', 'every day', "
    "'every week', 'every month'; 'every' is optional, the minimum is 30 seconds and the maximum 10 years"
)

_SECOND = 1.0
_MINUTE = 60.0
_HOUR = 3600.0
_DAY = 86400.0

# Unit words as the `ms` package spells them, plus `month` (Nango's "every month" is 30 days).
_UNITS: dict[str, float] = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), _SECOND),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), _MINUTE),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), _HOUR),
    **dict.fromkeys(("d", "day", "days"), _DAY),
    **dict.fromkeys(("w", "week", "weeks"), 7 * _DAY),
    **dict.fromkeys(("mo", "month", "months"), 30 * _DAY),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), 365.25 * _DAY),
}

# Fixed phrases Nango special-cases before calling `ms`.
_PHRASES: dict[str, float] = {
    "half hour": 30 * _MINUTE,
    "half an hour": 30 * _MINUTE,
    "quarter hour": 15 * _MINUTE,
    "quarter of an hour": 15 * _MINUTE,
    "half day": 12 * _HOUR,
    "half a day": 12 * _HOUR,
}

_DURATION = re.compile(r"^(?:(?P<num>\d+(?:\.\d+)?|\.\d+|an?|one)\s*)?(?P<unit>[a-z]+)$")


class ScheduleError(InvalidInputError):
    """A `runs:` text we cannot turn into an interval; the message lists what is accepted."""

    terminal = True
    code = "invalid_schedule"

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid schedule {text!r}: {reason}; accepted: {ACCEPTED_FORMS}")

    def __reduce__(self) -> tuple[type[ScheduleError], tuple[str, str]]:
        return (type(self), (self.text, self.reason))


def parse_schedule(text: str) -> timedelta:
    """Turn a `runs:` value such as "every 30min" or "every half hour" into a timedelta."""
    if not isinstance(text, str):
        raise ScheduleError(str(text), "expected text")
    norm = " ".join(text.lower().split())
    if norm.startswith("every "):
        norm = norm[len("every ") :]
    elif norm == "every":
        norm = ""
    if not norm:
        raise ScheduleError(text, "no interval given")
    if norm in _PHRASES:
        seconds = _PHRASES[norm]
    else:
        match = _DURATION.match(norm)
        if not match or match["unit"] not in _UNITS:
            raise ScheduleError(text, "unknown interval")
        num = match["num"]
        count = 1.0 if num is None or num in ("a", "an", "one") else float(num)
        seconds = count * _UNITS[match["unit"]]
    if seconds > MAX_INTERVAL.total_seconds():  # checked first: 'every 9999999 years' is no timedelta
        raise ScheduleError(text, "longer than the 10-year maximum")
    interval = timedelta(seconds=round(seconds, 3))
    if interval < MIN_INTERVAL:
        raise ScheduleError(text, f"shorter than the {int(MIN_INTERVAL.total_seconds())}s minimum")
    return interval


def format_interval(td: timedelta) -> str:
    """Canonical text for an interval ("every 30min", "every 2h", "every 1d"); parses back to `td`."""
    seconds = td.total_seconds()
    if seconds.is_integer():
        whole = int(seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if whole % size == 0 and whole >= size:
                return f"every {whole // size}{unit}"
        return f"every {whole}s"
    return f"every {seconds:.6f}".rstrip("0") + "s"
