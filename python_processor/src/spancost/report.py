"""`spancost report`, the pure part: query rows in, a `Report`, its table and its JSON out.

No database here: the stores answer `transaction_totals`, `domain_totals` and
`hourly_totals` (see `spancost.store.base`), and this module assembles what they
return over one window of whole UTC hours (`spancost.store.common.hour_window`):

- the total: every trace first seen in the window whose transaction is known, from
  the hourly rollup (the sum over its domains);
- the top transactions (from the trace rows) and the top domains (from the rollup),
  each with its cost, traces, spans, cost per trace and share of the total;
- the cost per hour (the rollup), every hour of the window, zeros included, with the
  top domains' part of it (``hourly_totals(..., by_domain=True)``);
- the unattributed share: the cost of the transaction named ``unattributed_name``
  (traces whose root never arrived, or had a blank name) over the total;
- coverage: per domain and in total, the spans spancost could not price (their cost
  is missing from the figures above, so a domain with many reads low), and the top
  ``cost.unpriced_reason`` values over the window;
- the pending traces: still waiting for their root, not yet in any transaction, and
  left out of everything above.

Amounts are converted from USD by multiplying by `rate` (`spancost.pricing.fx`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from spancost.config import parse_duration
from spancost.errors import ConfigError
from spancost.store.base import AllocatedRow, HourRow, ReconcileRow, SpendRow
from spancost.store.common import HOUR_NS, PENDING_DOMAIN, hour_window
from spancost.totals.aggregate import utc_from_ns
from spancost.totals.naming import UNATTRIBUTED

__all__ = [
    "JSON_FORMAT",
    "AllocatedLine",
    "AllocationView",
    "Figure",
    "HourFigure",
    "Report",
    "Unpriced",
    "build_allocation",
    "build_report",
    "format_money",
    "format_reconcile",
    "format_share",
    "format_table",
    "parse_span",
    "reconcile_json",
    "to_json",
]

JSON_FORMAT: Final = 1
"""``format`` in the JSON document; raised when a key changes meaning or disappears."""

_DAYS_RE: Final = re.compile(r"^(\d+)d")
_BAR_WIDTH: Final = 30


@dataclass(frozen=True, slots=True)
class Figure:
    """What a transaction or domain (or the whole window) cost, in the report's currency."""

    name: str
    cost: float
    traces: int
    spans: int
    share: float | None
    """`cost` over the window's total; None when the total is zero."""
    unpriced_spans: int | None = None
    """Spans of these traces spancost could not price; None where it is not counted
    (transactions)."""

    @property
    def cost_per_trace(self) -> float | None:
        """Cost per request: `cost` over `traces`; None without traces."""
        return self.cost / self.traces if self.traces else None

    @property
    def unpriced_share(self) -> float | None:
        """`unpriced_spans` over `spans`; None when not counted or without spans."""
        if self.unpriced_spans is None or not self.spans:
            return None
        return self.unpriced_spans / self.spans


@dataclass(frozen=True, slots=True)
class Unpriced:
    """Spans stored without a price, by reason, over the report's window."""

    spans: int
    share: float | None
    """`spans` over every span of the window's traces; None without spans."""
    reasons: tuple[tuple[str, int], ...]
    """(cost.unpriced_reason, spans), most first."""


@dataclass(frozen=True, slots=True)
class HourFigure:
    """What the traces first seen in one UTC hour cost."""

    hour: datetime
    cost: float
    traces: int
    spans: int
    domains: tuple[tuple[str, float], ...] = ()
    """(domain, cost) of the report's top domains with traces in this hour, in the order
    of `Report.domains`; the rest of `cost` is other domains'."""


@dataclass(frozen=True, slots=True)
class Report:
    start: datetime
    """First hour of the window (UTC, inclusive)."""
    end: datetime
    """End of the window's last hour (UTC, exclusive)."""
    currency: str
    rate: float
    """1 USD in `currency`."""
    excluded_environments: tuple[str, ...]
    total: Figure
    pending: Figure
    unattributed: Figure
    transactions: tuple[Figure, ...]
    domains: tuple[Figure, ...]
    hourly: tuple[HourFigure, ...]
    unpriced: Unpriced
    allocation: AllocationView | None = None
    """The nodes' cost as allocated (None: no node usage in the window)."""

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / timedelta(hours=1))


@dataclass(frozen=True, slots=True)
class AllocatedLine:
    """A line of the allocation: a transaction (or domain), an untraced workload, idle."""

    name: str
    cost: float
    share: float | None
    """`cost` over the whole (the nodes' bill and the per-request prices); None when zero."""
    requests: float = 0.0
    """Segments served (sampling-adjusted); a transaction's cost per request is over
    them."""
    compute: float = 0.0
    """Its share of the nodes' bill."""
    per_request: float = 0.0
    """What its spans priced per request cost (Lambda, Fargate, LLM tokens, rules)."""

    @property
    def cost_per_request(self) -> float | None:
        return self.cost / self.requests if self.requests > 0 else None


@dataclass(frozen=True, slots=True)
class AllocationView:
    """The nodes' cost over the window, split so that it adds up (spancost.allocation)."""

    bill: float
    """What the nodes cost over the window: the sum of the lines below."""
    transactions: tuple[AllocatedLine, ...]
    domains: tuple[AllocatedLine, ...]
    untraced: tuple[AllocatedLine, ...]
    idle: AllocatedLine
    unpriced_node_hours: int
    """Node-hours without a price (not in the bill; the reconcile names them)."""
    transactions_total: float = 0.0
    """Every transaction's share of the nodes, not only the top ones listed."""
    untraced_total: float = 0.0
    per_request_total: float = 0.0
    """What spans priced per request cost, outside the nodes' bill."""


def parse_span(text: str) -> timedelta:
    """A look-back such as ``24h``, ``7d``, ``1d12h``, ``90m`` (`ConfigError` at ``--since``)."""
    value = text.strip()
    days = 0
    match = _DAYS_RE.match(value)
    if match is not None:
        days, value = int(match.group(1)), value[match.end() :]
    seconds = parse_duration(value, "--since") if value else 0.0
    if days == 0 and seconds == 0:
        raise ConfigError("--since", f"must be a duration such as '24h' or '7d', got {text!r}")
    return timedelta(days=days, seconds=seconds)


def build_report(
    *,
    since: datetime,
    until: datetime,
    transactions: Sequence[SpendRow],
    unattributed: Sequence[SpendRow],
    domains: Sequence[SpendRow],
    hours: Sequence[HourRow],
    top: int,
    domain_hours: Sequence[HourRow] = (),
    coverage: Mapping[str, tuple[int, int]] | None = None,
    reasons: Sequence[tuple[str, int]] = (),
    unattributed_name: str = UNATTRIBUTED,
    currency: str = "USD",
    rate: float = 1.0,
    excluded_environments: Sequence[str] = (),
    allocation: AllocationView | None = None,
) -> Report:
    """Assemble a report from what the store answered for the window `since`..`until`.

    `domains` are all the window's domains (the pending row ``''`` included),
    `transactions` the top ones, `unattributed` the row(s) of `unattributed_name`;
    `coverage` is (spans, unpriced spans) by domain, `reasons` the unpriced reasons;
    `domain_hours` the hours by domain (`hourly_totals(..., by_domain=True)`).
    """
    counted = {} if coverage is None else coverage
    start_ns, end_ns = hour_window(since, until)
    known = [row for row in domains if row.name != PENDING_DOMAIN]
    pending_rows = [row for row in domains if row.name == PENDING_DOMAIN]
    total_usd = math.fsum(row.cost_usd for row in known)

    def figure(name: str, rows: Sequence[SpendRow], *, domains: bool = False) -> Figure:
        cost_usd = math.fsum(row.cost_usd for row in rows)
        unpriced = sum(counted.get(row.name, (0, 0))[1] for row in rows) if domains else None
        return Figure(
            name=name,
            cost=cost_usd * rate,
            traces=sum(row.traces for row in rows),
            spans=sum(row.spans for row in rows),
            share=cost_usd / total_usd if total_usd > 0 else None,
            unpriced_spans=unpriced,
        )

    by_hour = {row.hour: row for row in hours}
    listed = [row.name for row in known[:top]]
    by_hour_and_domain = {(row.hour, row.domain): row.cost_usd for row in domain_hours}
    hourly: list[HourFigure] = []
    for hour_ns in range(start_ns, end_ns, HOUR_NS):
        hour = utc_from_ns(hour_ns)
        row = by_hour.get(hour)
        parts = tuple(
            (name, by_hour_and_domain[hour, name] * rate)
            for name in listed
            if (hour, name) in by_hour_and_domain
        )
        hourly.append(
            HourFigure(hour, 0.0, 0, 0)
            if row is None
            else HourFigure(hour, row.cost_usd * rate, row.traces, row.spans, parts)
        )
    return Report(
        start=utc_from_ns(start_ns),
        end=utc_from_ns(end_ns),
        currency=currency,
        rate=rate,
        excluded_environments=tuple(sorted(excluded_environments)),
        total=figure("total", known, domains=True),
        pending=figure("pending", pending_rows),
        unattributed=figure(
            unattributed_name, [row for row in unattributed if row.name == unattributed_name]
        ),
        transactions=tuple(figure(row.name, [row]) for row in transactions[:top]),
        domains=tuple(figure(row.name, [row], domains=True) for row in known[:top]),
        hourly=tuple(hourly),
        unpriced=_unpriced(counted, reasons),
        allocation=allocation,
    )


def build_allocation(
    rows: Sequence[AllocatedRow],
    reconcile: Sequence[ReconcileRow],
    *,
    top: int,
    rate: float = 1.0,
) -> AllocationView | None:
    """The allocation part of the report; None when no node reported usage in the window.

    A transaction's cost is its share of the nodes plus what its spans priced per request
    (Lambda, Fargate, LLM tokens, rules), summed over its domains and environments; a
    domain's line holds its transactions and (with ``domains.owner`` on namespaces) its
    untraced workloads. Shares are of the whole: the nodes' bill and the per-request
    prices.
    """
    if not reconcile:
        return None
    bill = math.fsum(line.bill_usd for line in reconcile if line.bill_usd is not None)
    per_request = math.fsum(row.request_usd for row in rows)
    whole = bill + per_request

    def line(
        name: str, compute: Sequence[float], requested: Sequence[float] = (), count: float = 0.0
    ) -> AllocatedLine:
        on_nodes, priced = math.fsum(compute), math.fsum(requested)
        cost = on_nodes + priced
        return AllocatedLine(
            name,
            cost * rate,
            cost / whole if whole > 0 else None,
            count,
            compute=on_nodes * rate,
            per_request=priced * rate,
        )

    transactions: dict[str, tuple[list[float], list[float], list[float]]] = {}
    domains: dict[str, tuple[list[float], list[float]]] = {}
    untraced: dict[str, list[float]] = {}
    idle: list[float] = []
    for row in rows:
        if row.kind == "transaction":
            compute, requested, counts = transactions.setdefault(row.transaction, ([], [], []))
            compute.append(row.usd)
            requested.append(row.request_usd)
            counts.append(row.segments)
        elif row.kind == "untraced":
            name = f"{row.namespace}/{row.workload}" if row.namespace else row.workload
            untraced.setdefault(name, []).append(row.usd)
        else:
            idle.append(row.usd)
        if row.kind != "idle" and row.domain:
            compute, requested = domains.setdefault(row.domain, ([], []))
            compute.append(row.usd)
            requested.append(row.request_usd)

    def ranked(lines: list[AllocatedLine]) -> tuple[AllocatedLine, ...]:
        return tuple(sorted(lines, key=lambda item: (-item.cost, item.name))[:top])

    return AllocationView(
        bill=bill * rate,
        transactions=ranked(
            [line(name, c, r, math.fsum(n)) for name, (c, r, n) in transactions.items()]
        ),
        domains=ranked([line(name, c, r) for name, (c, r) in domains.items()]),
        untraced=ranked([line(name, costs) for name, costs in untraced.items()]),
        idle=line("idle", idle),
        unpriced_node_hours=sum(1 for item in reconcile if item.bill_usd is None),
        transactions_total=math.fsum(c for costs, _, _ in transactions.values() for c in costs)
        * rate,
        untraced_total=math.fsum(c for costs in untraced.values() for c in costs) * rate,
        per_request_total=per_request * rate,
    )


def _unpriced(
    coverage: Mapping[str, tuple[int, int]], reasons: Sequence[tuple[str, int]]
) -> Unpriced:
    spans = sum(total for total, _ in coverage.values())
    unpriced = sum(count for _, count in coverage.values())
    return Unpriced(
        spans=unpriced,
        share=unpriced / spans if spans else None,
        reasons=tuple(reasons),
    )


# -- JSON ------------------------------------------------------------------------------


def to_json(report: Report) -> dict[str, Any]:
    """The ``--json`` document (keys documented in the README, ``format`` 1)."""
    return {
        "format": JSON_FORMAT,
        "window": {
            "from": _iso(report.start),
            "to": _iso(report.end),
            "hours": report.hours,
        },
        "currency": report.currency,
        "usd_rate": report.rate,
        "excluded_environments": list(report.excluded_environments),
        "total": _figure_json(report.total, named=False),
        "pending": _figure_json(report.pending, named=False),
        "unattributed": _figure_json(report.unattributed),
        "transactions": [_figure_json(item) for item in report.transactions],
        "domains": [_figure_json(item) for item in report.domains],
        "hourly": [
            {
                "hour": _iso(item.hour),
                "cost": item.cost,
                "traces": item.traces,
                "spans": item.spans,
                "domains": dict(item.domains),
            }
            for item in report.hourly
        ],
        "unpriced": {
            "spans": report.unpriced.spans,
            "share": report.unpriced.share,
            "reasons": [
                {"reason": reason, "spans": spans} for reason, spans in report.unpriced.reasons
            ],
        },
        "allocation": None if report.allocation is None else _allocation_json(report.allocation),
    }


def _allocation_json(view: AllocationView) -> dict[str, Any]:
    def line(item: AllocatedLine, *, requests: bool = False) -> dict[str, Any]:
        document: dict[str, Any] = {"name": item.name, "cost": item.cost, "share": item.share}
        if requests:
            document.update(
                compute=item.compute,
                per_request=item.per_request,
                requests=item.requests,
                cost_per_request=item.cost_per_request,
            )
        return document

    return {
        "bill": view.bill,
        "transactions_total": view.transactions_total,
        "untraced_total": view.untraced_total,
        "per_request_total": view.per_request_total,
        "transactions": [line(item, requests=True) for item in view.transactions],
        "domains": [line(item) for item in view.domains],
        "untraced": [line(item) for item in view.untraced],
        "idle": line(view.idle),
        "unpriced_node_hours": view.unpriced_node_hours,
    }


def reconcile_json(lines: Sequence[ReconcileRow], rate: float = 1.0) -> list[dict[str, Any]]:
    """``spancost report --reconcile --json``: one object per node and hour."""

    def money(amount: float | None) -> float | None:
        return None if amount is None else amount * rate

    return [
        {
            "hour": _iso(line.hour),
            "node": line.node,
            "bill": money(line.bill_usd),
            "transactions": money(line.transactions_usd),
            "untraced": money(line.untraced_usd),
            "idle": money(line.idle_usd),
            "difference": money(line.difference),
            "price_source": line.price_source,
            "price_as_of": line.price_as_of,
            "unpriced_reason": line.unpriced_reason,
        }
        for line in lines
    ]


def _figure_json(figure: Figure, *, named: bool = True) -> dict[str, Any]:
    document: dict[str, Any] = {"name": figure.name} if named else {}
    document.update(
        cost=figure.cost,
        traces=figure.traces,
        spans=figure.spans,
        cost_per_trace=figure.cost_per_trace,
        share=figure.share,
    )
    if figure.unpriced_spans is not None:
        document.update(unpriced_spans=figure.unpriced_spans, unpriced_share=figure.unpriced_share)
    return document


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the table -------------------------------------------------------------------------


def format_table(report: Report) -> str:
    """The report as plain text for a terminal (no colours, fixed-width columns)."""
    currency = report.currency
    lines = [
        f"spancost report {_when(report.start)} to {_when(report.end)} UTC"
        f" ({report.hours} h), amounts in {currency}"
        + (f" (1 USD = {report.rate:g} {currency})" if currency != "USD" else ""),
    ]
    if report.excluded_environments:
        lines.append(f"environments left out: {', '.join(report.excluded_environments)}")
    total = report.total
    lines.append(
        f"total {format_money(total.cost)} over {total.traces:,} traces"
        f" ({format_money(total.cost_per_trace)} per trace)"
    )
    unattributed = report.unattributed
    lines.append(
        f"unattributed ({unattributed.name}): {format_share(unattributed.share)} of the total,"
        f" {format_money(unattributed.cost)} over {unattributed.traces:,} traces"
    )
    unpriced = report.unpriced
    if unpriced.spans:
        top = ", ".join(f"{reason} {spans:,}" for reason, spans in unpriced.reasons[:3])
        lines.append(
            f"unpriced: {format_share(unpriced.share)} of spans ({unpriced.spans:,}), their cost"
            f" missing above; top reasons: {top}"
        )
    if report.pending.traces:
        lines.append(
            f"waiting for their root (not counted above): {report.pending.traces:,} traces,"
            f" {format_money(report.pending.cost)}"
        )
    lines += ["", *_figures_table("transaction", report.transactions)]
    lines += ["", *_figures_table("domain", report.domains)]
    lines += ["", *_hourly_table(report.hourly)]
    if report.allocation is not None:
        lines += ["", *_allocation_table(report.allocation)]
    return "\n".join(lines) + "\n"


def _allocation_table(view: AllocationView) -> list[str]:
    lines = [
        f"the nodes' bill, allocated: {format_money(view.bill)} = transactions"
        f" {format_money(view.transactions_total)} + untraced {format_money(view.untraced_total)}"
        f" + idle {format_money(view.idle.cost)}"
    ]
    if view.per_request_total:
        lines.append(
            f"priced per request (Lambda, Fargate, LLM, rules), added to their transactions:"
            f" {format_money(view.per_request_total)}"
        )
    if view.unpriced_node_hours:
        lines.append(
            f"{view.unpriced_node_hours} node-hours without a price are not in the bill"
            " (spancost report --reconcile names them)"
        )
    if view.transactions:
        rows: list[tuple[str, ...]] = [
            (
                item.name,
                format_money(item.cost),
                format_share(item.share),
                f"{item.requests:,.0f}",
                format_money(item.cost_per_request),
            )
            for item in view.transactions
        ]
        header = ("transaction", "cost", "share", "requests", "per request")
        lines += ["", "allocated by transaction", *_columns(header, rows)]
    for title, name, items in (
        ("allocated by domain", "domain", view.domains),
        ("untraced workloads", "namespace/workload", view.untraced),
    ):
        if items:
            rows = [
                (item.name, format_money(item.cost), format_share(item.share)) for item in items
            ]
            lines += ["", title, *_columns((name, "cost", "share"), rows)]
    lines += [
        "",
        f"idle (capacity no pod requested): {format_money(view.idle.cost)}"
        f" ({format_share(view.idle.share)})",
    ]
    return lines


def format_reconcile(lines: Sequence[ReconcileRow], currency: str, rate: float = 1.0) -> str:
    """``spancost report --reconcile``: per node and hour, the bill and its allocation."""
    if not lines:
        return "no node reported usage in the window\n"

    def money(amount: float | None) -> str:
        return "-" if amount is None else format_money(amount * rate)

    rows = [
        (
            _when(line.hour),
            line.node,
            money(line.bill_usd),
            money(line.transactions_usd),
            money(line.untraced_usd),
            money(line.idle_usd),
            f"{line.difference * rate:.2e}" if line.bill_usd is not None else "-",
            line.unpriced_reason
            or (
                f"{line.price_source} {line.price_as_of}"
                if line.price_source is not None
                else "(usage past retention)"
            ),
        )
        for line in lines
    ]
    header = ("hour (UTC)", "node", "bill", "transactions", "untraced", "idle", "difference",
              "price")  # fmt: skip
    return "\n".join([f"amounts in {currency}", *_columns(header, rows)]) + "\n"


def _figures_table(kind: str, figures: Sequence[Figure]) -> list[str]:
    title = f"top {len(figures)} {kind}s by cost" if figures else f"no {kind}s in the window"
    if not figures:
        return [title]
    counted = any(item.unpriced_spans is not None for item in figures)
    rows: list[tuple[str, ...]] = [
        (
            item.name,
            format_money(item.cost),
            format_share(item.share),
            f"{item.traces:,}",
            format_money(item.cost_per_trace),
            *([format_share(item.unpriced_share)] if counted else []),
        )
        for item in figures
    ]
    header = (kind, "cost", "share", "traces", "per trace", *(["unpriced"] if counted else []))
    return [title, *_columns(header, rows)]


def _hourly_table(hourly: Sequence[HourFigure]) -> list[str]:
    peak = max((item.cost for item in hourly), default=0.0)
    rows = [
        (
            _when(item.hour),
            format_money(item.cost),
            f"{item.traces:,}",
            "#" * round(_BAR_WIDTH * item.cost / peak) if peak > 0 else "",
        )
        for item in hourly
    ]
    return ["cost per hour", *_columns(("hour (UTC)", "cost", "traces", ""), rows)]


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-align the first column, right-align the others (except a last, empty-headed one)."""
    widths = [max(len(row[index]) for row in [header, *rows]) for index in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = []
        for index, cell in enumerate(row):
            if index == 0 or (index == len(row) - 1 and not header[index]):
                cells.append(cell.ljust(widths[index]))
            else:
                cells.append(cell.rjust(widths[index]))
        return "  ".join(cells).rstrip()

    return [line(header), *(line(row) for row in rows)]


def format_money(amount: float | None) -> str:
    """Readable at every scale: cents for large sums, significant digits for tiny ones."""
    if amount is None:
        return "-"
    if amount == 0:
        return "0"
    if abs(amount) >= 100:
        return f"{amount:,.2f}"
    if abs(amount) >= 0.01:
        return f"{amount:.4f}"
    return f"{amount:.3g}"


def format_share(share: float | None) -> str:
    """A share as a percentage with one decimal; "-" for none."""
    return "-" if share is None else f"{share * 100:.1f}%"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
