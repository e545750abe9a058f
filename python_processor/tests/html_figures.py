"""How the HTML report writes a figure, for the tests that read the page (the unit test
of the rendered file and the browser test, which loads this module by path): a key of
the ``--json`` document resolved, and its value written as the page writes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spancost.report import format_money, format_share

__all__ = ["SHOWN_AS", "resolve", "shown_as"]


def resolve(value: Any, key: str) -> Any:
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _when(value: Any) -> str:
    return str(value)[:16].replace("T", " ")


SHOWN_AS: dict[str, Callable[[Any], str]] = {
    "share": format_share,
    "unpriced_share": format_share,
    **dict.fromkeys(("traces", "spans", "hours", "unpriced_node_hours", "format"), "{:,}".format),
    "requests": "{:,.0f}".format,
    **dict.fromkeys(("from", "to", "hour"), _when),
    "usd_rate": "{:g}".format,
}
"""How the page writes a figure, by its key's last part (as the table does); names as
they are, other amounts with `format_money`."""


def shown_as(key: str, value: Any) -> str:
    show = SHOWN_AS.get(key.rsplit(".", 1)[-1])
    if show is not None:
        return show(value)
    return value if isinstance(value, str) else format_money(value)
