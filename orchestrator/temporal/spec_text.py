"""A schedule's spec said in one line, for a spec the platform did not write (edited in the Temporal UI).

The platform writes one interval per schedule; the Temporal UI's editor can also set days of the week, days
of the month or a cron string, which the server keeps as calendar specs. Status, the dashboard and
`nango admin` say such a spec as a cron line ("cron 30 9 * * 1-5"), so nobody is told the deployed
interval while Temporal runs something else.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import ScheduleCalendarSpec, ScheduleRange, ScheduleSpec

from orchestrator.config.schedule import format_interval


def _field(ranges: Sequence[ScheduleRange], full: tuple[int, int] | None) -> str:
    """One cron field: `*` (or `*/step`) for the whole span, else the ranges as `a`, `a-b` or `a-b/step`."""
    if not ranges:
        return "*"
    out = []
    for r in ranges:
        end = max(r.end, r.start)
        if (r.start, end) == full:
            text = "*"
        else:
            text = str(r.start) if end == r.start else f"{r.start}-{end}"
        out.append(f"{text}/{r.step}" if r.step > 1 else text)
    return ",".join(out)


def calendar_text(cal: ScheduleCalendarSpec) -> str:
    """Cron's five fields (minute hour day-of-month month day-of-week); seconds first and the year last only
    when they are not Temporal's defaults (second 0, every year)."""
    fields = [_field(cal.minute, (0, 59)), _field(cal.hour, (0, 23)), _field(cal.day_of_month, (1, 31)),
              _field(cal.month, (1, 12)), _field(cal.day_of_week, (0, 6))]
    if cal.second and [(r.start, r.end) for r in cal.second] != [(0, 0)]:
        fields.insert(0, _field(cal.second, (0, 59)))
    if cal.year:
        fields.append(_field(cal.year, None))
    text = "cron " + " ".join(fields)
    return f"{text} ({cal.comment})" if cal.comment else text


def spec_text(spec: ScheduleSpec) -> str | None:
    """Every rule of the spec, joined with "and"; the time zone when one is set. None for an empty spec."""
    parts = [format_interval(i.every) for i in spec.intervals]
    parts += [calendar_text(c) for c in spec.calendars]
    parts += [f"cron {c}" for c in spec.cron_expressions]
    if not parts:
        return None
    text = " and ".join(parts)
    zoned = spec.time_zone_name and (spec.calendars or spec.cron_expressions)
    return f"{text} in {spec.time_zone_name}" if zoned else text
