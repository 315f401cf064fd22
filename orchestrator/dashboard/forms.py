"""The dashboard's one form widget: a POST form carrying the session's CSRF token and hidden fields.

Every control on every page is written with it, so the token, the hidden fields and the button
attributes the script (`data-confirm`) and the tests (`data-op`) rely on are spelled in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.dashboard.render import Safe, fmt, join


def hidden(name: str, value: Any) -> Safe:
    """One hidden field; the value is escaped like every other."""
    return fmt('<input type="hidden" name="{n}" value="{v}">', n=name, v=value)


def submit(label: Any, cls: str | None = None, **data: Any) -> Safe:
    """A submit button; `data` becomes `data-*` attributes in the order given (`op=` is `data-op`)."""
    attrs = fmt(' class="{c}"', c=cls) if cls is not None else Safe("")
    attrs += join(fmt(' data-{k}="{v}"', k=k, v=v) for k, v in data.items())
    return fmt('<button type="submit"{attrs}>{label}</button>', attrs=attrs, label=label)


def post_form(csrf: str, action: str, fields: Mapping[str, Any], controls: Safe, *,
              cls: str | None = "inline") -> Safe:
    """A POST form to `action`: the CSRF token, then `fields` as hidden inputs, then the visible `controls`."""
    attrs = fmt(' class="{c}"', c=cls) if cls is not None else Safe("")
    return fmt('<form method="post" action="{action}"{attrs}>{csrf}{fields}{controls}</form>', action=action,
               attrs=attrs, csrf=hidden("csrf", csrf), fields=join(hidden(k, v) for k, v in fields.items()),
               controls=controls)
