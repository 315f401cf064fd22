"""HTML building blocks. Every value goes through `esc` unless it is already `Safe` markup.

`fmt(template, **values)` is `str.format` with every value escaped: templates are literals in
this package, values are data. Nothing user-controlled is ever marked `Safe` without escaping.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import orjson


class Safe(str):
    """Markup built by this module; never wrap user data in it directly."""

    __slots__ = ()

    def __add__(self, other: str) -> Safe:
        return Safe(str.__add__(self, esc(other)))

    def __radd__(self, other: str) -> Safe:
        return Safe(str.__add__(esc(other), self))


def esc(value: Any) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def fmt(template: str, **values: Any) -> Safe:
    return Safe(template.format(**{k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(sep.join(esc(p) for p in parts))


def url(path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return f"{path}?{query}" if query else path


def link(href: str, text: Any, cls: str = "") -> Safe:
    return fmt('<a href="{href}" class="{cls}">{text}</a>', href=href, text=text, cls=cls)


def temporal_schedule_url(base: str, namespace: str, schedule_id: str) -> str:
    return f"{base.rstrip('/')}/namespaces/{quote(namespace, safe='')}/schedules/{quote(schedule_id, safe='')}"


# ---- values ------------------------------------------------------------------------------------

def when(value: datetime | str | None, now: datetime | None = None) -> Safe:
    """A UTC time with a relative hint in its title."""
    if value is None:
        return Safe('<span class="muted">never</span>')
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return esc(value)
    now = now or datetime.now(UTC)
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        rel = "just now"
    else:
        text = duration(abs(delta)) if abs(delta) >= 60 else f"{int(abs(delta))} s"
        rel = f"in {text}" if delta > 0 else f"{text} ago"
    return fmt('<time datetime="{iso}" title="{abs}">{rel}</time>', iso=value.isoformat(),
               abs=value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), rel=rel)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{int(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"


def run_duration(started: datetime, ended: datetime | None, now: datetime | None = None) -> float:
    return ((ended or now or datetime.now(UTC)) - started).total_seconds()


def badge(status: str | None) -> Safe:
    text = (status or "unknown").lower()
    return fmt('<span class="badge b-{cls}">{text}</span>', cls="".join(c for c in text if c.isalnum()), text=text)


def pretty_json(value: Any, limit: int = 20000) -> Safe:
    if value is None:
        return Safe('<span class="muted">none</span>')
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return fmt('<pre class="json">{v}</pre>', v=value[:limit])
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return fmt('<pre class="json">{v}</pre>', v=text)


def short_json(value: Any, limit: int = 120) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", empty: str = "Nothing yet.",
          row_ids: Sequence[str] | None = None) -> Safe:
    body = []
    for i, row in enumerate(rows):
        rid = fmt(' id="{v}"', v=row_ids[i]) if row_ids else ""
        body.append(Safe(f"<tr{rid}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"))
    if not body:
        body = [fmt('<tr><td colspan="{n}" class="empty">{e}</td></tr>', n=len(headers), e=empty)]
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return Safe(f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


# ---- the execution-time chart ---------------------------------------------------------------

def duration_chart(runs: Sequence[tuple[int, str, datetime, datetime | None]], job_href: str,
                   now: datetime | None = None) -> Safe:
    """Bars of recent run durations, oldest first, as inline SVG. `runs` are (job id, status, start, end)."""
    if not runs:
        return Safe('<p class="muted chart-empty">No runs yet: the chart fills in as the sync runs.</p>')
    now = now or datetime.now(UTC)
    data = [(jid, status, start, run_duration(start, end, now)) for jid, status, start, end in runs][::-1]
    width, height, pad_l, pad_b, pad_t = 640, 150, 56, 18, 10
    peak = max(d for *_, d in data) or 1.0
    slots = max(len(data), 30)  # fixed slots, latest on the right: bars keep their width as runs accumulate
    slot = (width - pad_l - 8) / slots
    bar = max(slot * 0.7, 2)
    parts = [fmt('<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="Execution time of recent runs">',
                 w=width, h=height)]
    for frac in (0, 0.5, 1):
        y = pad_t + (height - pad_t - pad_b) * (1 - frac)
        parts.append(fmt('<line class="grid" x1="{x1}" x2="{x2}" y1="{y}" y2="{y}"/>'
                         '<text class="axis" x="{tx}" y="{ty}" text-anchor="end">{label}</text>',
                         x1=pad_l, x2=width - 4, y=f"{y:.1f}", tx=pad_l - 6, ty=f"{y + 4:.1f}",
                         label=duration(peak * frac) if frac else "0"))
    for i, (jid, status, start, dur) in enumerate(data):
        h = max((height - pad_t - pad_b) * dur / peak, 1.5)
        x = pad_l + (slots - len(data) + i) * slot + (slot - bar) / 2
        y = height - pad_b - h
        parts.append(fmt(
            '<a href="{href}"><rect class="bar s-{status}" x="{x}" y="{y}" width="{bw}" height="{bh}" rx="2">'
            '<title>Run #{jid} · {status} · {start} · {dur}</title></rect></a>',
            href=url(job_href, id=jid), status=status, x=f"{x:.1f}", y=f"{y:.1f}", bw=f"{bar:.1f}",
            bh=f"{h:.1f}", jid=jid, start=start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            dur=duration(dur)))
    parts.append(fmt('<text class="axis" x="{x}" y="{y}">oldest</text>'
                     '<text class="axis" x="{x2}" y="{y}" text-anchor="end">latest</text>',
                     x=pad_l, x2=width - 4, y=height - 3))
    parts.append(Safe("</svg>"))
    return join(parts)
