"""``spancost report --html``: the report as one self-contained page (the pure part: no
database; its script, style and uPlot are package data).

`render_html` takes the ``--json`` document (`spancost.report.to_json`), not the
`Report`, so the page cannot say anything the document does not: its text (the
figures, tables and the allocation's split) is written here from the document, and the
document itself is embedded in the page (``<script type="application/json"
id="spancost-report">``) for the chart, the cost per hour stacked by domain, which
``htmlreport.js`` draws with uPlot (vendored in ``vendor/uplot``; see its ``SOURCE``).

Self-contained: both scripts and every style are inlined, and the page's
Content-Security-Policy runs only those two scripts (by hash) and allows no request of
any kind, so opening it offline shows everything and reaches for nothing.

Every figure in the text carries ``data-key``, its path in the document
(``transactions.0.cost``), and ``data-value``, its JSON value, so a test (or a script)
can check the page against the document.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from html import escape
from importlib import resources
from typing import Any, Final

from spancost.report import format_money, format_share

__all__ = ["UPLOT_VERSION", "render_html"]

UPLOT_VERSION: Final = "1.6.32"
"""The vendored uPlot (`vendor/uplot/SOURCE`)."""

_DATA_ID: Final = "spancost-report"
_Format = Callable[[Any], str]


@cache
def _asset(name: str) -> str:
    return resources.files("spancost").joinpath(name).read_text(encoding="utf-8")


def _count(value: Any) -> str:
    return f"{value:,}"


def _requests(value: Any) -> str:
    return f"{value:,.0f}"


def _hour(value: Any) -> str:
    """``2025-01-31T11:00:00Z`` as the table writes it: ``2025-01-31 11:00``."""
    return str(value)[:16].replace("T", " ")


def _text(value: Any) -> str:
    return str(value)


def _figure(key: str, value: Any, show: _Format, tag: str = "span", css: str = "") -> str:
    """One figure of the document: its text, with its path and JSON value as data."""
    attributes = f' class="{css}"' if css else ""
    return (
        f'<{tag}{attributes} data-key="{escape(key)}"'
        f' data-value="{escape(json.dumps(value))}">{escape(show(value))}</{tag}>'
    )


def _at(document: Mapping[str, Any], key: str) -> Any:
    value: Any = document
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _script_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _embedded(document: Mapping[str, Any]) -> str:
    """The document as a JSON data block: ``<``, ``>`` and ``&`` escaped, as they could
    only occur in strings (names from spans), so no name can close the block."""
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(document: Mapping[str, Any]) -> str:
    """The page for one ``--json`` document (``format`` 1)."""
    licence = _asset("vendor/uplot/LICENSE").strip()
    uplot = f"/*! uPlot {UPLOT_VERSION}\n{licence}\n*/\n{_asset('vendor/uplot/uPlot.iife.min.js')}"
    chart = _asset("htmlreport.js")
    policy = (
        f"default-src 'none'; script-src {_script_hash(uplot)} {_script_hash(chart)};"
        " style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
    )
    window = document["window"]
    title = f"spancost report {_hour(window['from'])} to {_hour(window['to'])} UTC"
    body = [
        *_header(document),
        *_hourly(document),
        *_figures(document, "transactions", "transaction"),
        *_figures(document, "domains", "domain"),
        *_unpriced(document),
        *_allocation(document),
        "<footer>",
        "<p>Every figure and the chart come from the report's <code>--json</code> document"
        f" (format {_figure('format', document['format'], _text)}), embedded in this page."
        f" Chart: uPlot {UPLOT_VERSION} (MIT licence, in the page's source). The page loads"
        " nothing from anywhere.</p>",
        "</footer>",
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>\n{_asset('vendor/uplot/uPlot.min.css')}\n{_asset('htmlreport.css')}</style>",
            "</head>",
            "<body>",
            "<main>",
            *body,
            "</main>",
            f'<script type="application/json" id="{_DATA_ID}">{_embedded(document)}</script>',
            f"<script>{uplot}</script>",
            f"<script>{chart}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _header(document: Mapping[str, Any]) -> list[str]:
    window = document["window"]
    currency = document["currency"]
    rate = document["usd_rate"]
    converted = (
        f" (1 USD = {_figure('usd_rate', rate, lambda value: f'{value:g}')} {escape(currency)})"
        if currency != "USD"
        else ""
    )
    lines = [
        "<header>",
        "<h1>spancost report</h1>",
        f"<p>{_figure('window.from', window['from'], _hour)} to"
        f" {_figure('window.to', window['to'], _hour)} UTC"
        f" ({_figure('window.hours', window['hours'], _count)} h), amounts in"
        f" {_figure('currency', currency, _text)}{converted}</p>",
    ]
    excluded = document["excluded_environments"]
    if excluded:
        names = ", ".join(
            _figure(f"excluded_environments.{index}", name, _text)
            for index, name in enumerate(excluded)
        )
        lines.append(f'<p class="muted">environments left out: {names}</p>')
    lines.append("</header>")
    total, unattributed = document["total"], document["unattributed"]
    unpriced = document["unpriced"]
    cards = [
        (
            "total",
            _figure("total.cost", total["cost"], format_money, css="big"),
            f"{_figure('total.traces', total['traces'], _count)} traces,"
            f" {_figure('total.cost_per_trace', total['cost_per_trace'], format_money)}"
            " per request",
        ),
        (
            "unattributed",
            _figure("unattributed.share", unattributed["share"], format_share, css="big"),
            f"of the total: {_figure('unattributed.cost', unattributed['cost'], format_money)}"
            f" over {_figure('unattributed.traces', unattributed['traces'], _count)} traces"
            f" named {_figure('unattributed.name', unattributed['name'], _text)}",
        ),
        (
            "unpriced",
            _figure("unpriced.share", unpriced["share"], format_share, css="big"),
            f"of spans ({_figure('unpriced.spans', unpriced['spans'], _count)}): their cost is"
            " missing from every figure",
        ),
    ]
    pending = document["pending"]
    if pending["traces"]:
        cards.append(
            (
                "waiting for their root",
                _figure("pending.traces", pending["traces"], _count, css="big"),
                f"traces, {_figure('pending.cost', pending['cost'], format_money)}, not counted"
                " above",
            )
        )
    lines.append('<section class="cards">')
    for label, big, detail in cards:
        lines.append(
            f'<div class="card"><span class="label">{escape(label)}</span>{big}'
            f'<span class="muted">{detail}</span></div>'
        )
    lines.append("</section>")
    return lines


def _meter(share: float | None) -> str:
    width = 0.0 if share is None else max(0.0, min(share, 1.0)) * 100
    return f'<span class="meter"><span style="width:{width:.1f}%"></span></span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{escape(name)}</th>" for name in header) + "</tr></thead>",
        "<tbody>",
        *("<tr>" + "".join(row) + "</tr>" for row in rows),
        "</tbody>",
        "</table>",
    ]


def _cell(key: str, value: Any, show: _Format, css: str = "") -> str:
    return _figure(key, value, show, tag="td", css=css)


def _share_cell(key: str, share: float | None) -> str:
    return f'<td class="share">{_figure(key, share, format_share)}{_meter(share)}</td>'


def _hourly(document: Mapping[str, Any]) -> list[str]:
    hourly = document["hourly"]
    rows = [
        [
            _cell(f"hourly.{index}.hour", item["hour"], _hour),
            _cell(f"hourly.{index}.cost", item["cost"], format_money),
            _cell(f"hourly.{index}.traces", item["traces"], _count),
        ]
        for index, item in enumerate(hourly)
    ]
    return [
        "<section>",
        "<h2>Cost per hour, by domain</h2>",
        '<p class="muted">Each trace in the hour it was first seen; the top domains'
        " stacked, the rest as other domains.</p>",
        '<div id="hourly-chart" class="chart" role="img"'
        ' aria-label="cost per hour, stacked by domain"></div>',
        f"<details><summary>every hour ({len(hourly)})</summary>",
        *_table(("hour (UTC)", "cost", "traces"), rows),
        "</details>",
        "</section>",
    ]


def _figures(document: Mapping[str, Any], key: str, kind: str) -> list[str]:
    figures = document[key]
    title = f"Top {len(figures)} {kind}s by cost" if figures else f"No {kind}s in the window"
    if not figures:
        return ["<section>", f"<h2>{escape(title)}</h2>", "</section>"]
    counted = any("unpriced_share" in item for item in figures)
    rows = [
        [
            _cell(f"{key}.{index}.name", item["name"], _text),
            _cell(f"{key}.{index}.cost", item["cost"], format_money),
            _share_cell(f"{key}.{index}.share", item["share"]),
            _cell(f"{key}.{index}.traces", item["traces"], _count),
            _cell(f"{key}.{index}.cost_per_trace", item["cost_per_trace"], format_money),
            *(
                [_cell(f"{key}.{index}.unpriced_share", item["unpriced_share"], format_share)]
                if counted
                else []
            ),
        ]
        for index, item in enumerate(figures)
    ]
    header = (kind, "cost", "share", "traces", "per request", *(["unpriced"] if counted else []))
    return [
        "<section>",
        f"<h2>{escape(title)}</h2>",
        '<p class="muted">Per request: cost ÷ traces.'
        + (" Unpriced: the share of its spans spancost could not price." if counted else "")
        + "</p>",
        *_table(header, rows),
        "</section>",
    ]


def _unpriced(document: Mapping[str, Any]) -> list[str]:
    unpriced = document["unpriced"]
    lines = ["<section>", "<h2>Unpriced spans</h2>"]
    if not unpriced["spans"]:
        return [*lines, "<p>Every span of the window was priced.</p>", "</section>"]
    rows = [
        [
            _cell(f"unpriced.reasons.{index}.reason", item["reason"], _text),
            _cell(f"unpriced.reasons.{index}.spans", item["spans"], _count),
        ]
        for index, item in enumerate(unpriced["reasons"])
    ]
    return [
        *lines,
        "<p>Their cost is missing from the figures above (a domain with many reads low);"
        " the reasons, from <code>cost.unpriced_reason</code>:</p>",
        *_table(("reason", "spans"), rows),
        "</section>",
    ]


_SPLIT: Final = (
    ("transactions_total", "transactions", "transactions"),
    ("untraced_total", "untraced workloads", "untraced"),
    ("idle.cost", "idle", "idle"),
    ("per_request_total", "priced per request", "per-request"),
)


def _allocation(document: Mapping[str, Any]) -> list[str]:
    allocation = document["allocation"]
    if allocation is None:
        return []
    whole = allocation["bill"] + allocation["per_request_total"]
    parts = [(key, label, css, _at(allocation, key)) for key, label, css in _SPLIT]
    bar = "".join(
        f'<span class="{css}" style="width:{100 * amount / whole:.3f}%"'
        f' title="{escape(label)}"></span>'
        for _, label, css, amount in parts
        if whole > 0 and amount > 0
    )
    keys = "".join(
        f'<li><span class="swatch {css}"></span>{escape(label)}'
        f" {_figure(f'allocation.{key}', amount, format_money)}</li>"
        for key, label, css, amount in parts
    )
    lines = [
        "<section>",
        "<h2>The nodes' bill, allocated</h2>",
        f"<p>The nodes cost {_figure('allocation.bill', allocation['bill'], format_money)}:"
        " transactions, untraced workloads and idle add up to it. What spans priced per"
        " request (Lambda, Fargate, LLM tokens, rules) is added to their transactions.</p>",
        f'<div class="split" role="img" aria-label="the allocation">{bar}</div>',
        f'<ul class="keys">{keys}</ul>',
    ]
    if allocation["unpriced_node_hours"]:
        unpriced = _figure(
            "allocation.unpriced_node_hours", allocation["unpriced_node_hours"], _count
        )
        lines.append(
            f'<p class="note">{unpriced} node-hours without a price are not in the bill'
            " (<code>spancost report --reconcile</code> names them).</p>"
        )
    transactions = [
        [
            _cell(f"allocation.transactions.{index}.name", item["name"], _text),
            _cell(f"allocation.transactions.{index}.cost", item["cost"], format_money),
            _share_cell(f"allocation.transactions.{index}.share", item["share"]),
            _cell(f"allocation.transactions.{index}.compute", item["compute"], format_money),
            _cell(
                f"allocation.transactions.{index}.per_request", item["per_request"], format_money
            ),
            _cell(f"allocation.transactions.{index}.requests", item["requests"], _requests),
            _cell(
                f"allocation.transactions.{index}.cost_per_request",
                item["cost_per_request"],
                format_money,
            ),
        ]
        for index, item in enumerate(allocation["transactions"])
    ]
    if transactions:
        header = ("transaction", "cost", "share", "on nodes", "priced per request", "requests",
                  "per request")  # fmt: skip
        lines += ["<h3>By transaction</h3>", *_table(header, transactions)]
    for key, title, name in (
        ("domains", "By domain", "domain"),
        ("untraced", "Untraced workloads", "namespace/workload"),
    ):
        rows = [
            [
                _cell(f"allocation.{key}.{index}.name", item["name"], _text),
                _cell(f"allocation.{key}.{index}.cost", item["cost"], format_money),
                _share_cell(f"allocation.{key}.{index}.share", item["share"]),
            ]
            for index, item in enumerate(allocation[key])
        ]
        if rows:
            lines += [f"<h3>{escape(title)}</h3>", *_table((name, "cost", "share"), rows)]
    idle = allocation["idle"]
    lines += [
        f"<p>Idle (capacity no pod requested):"
        f" {_figure('allocation.idle.cost', idle['cost'], format_money)}"
        f" ({_figure('allocation.idle.share', idle['share'], format_share)}).</p>",
        "</section>",
    ]
    return lines
