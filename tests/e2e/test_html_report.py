"""``spancost report --html`` in a real browser: the page the real CLI writes, opened by
headless Chromium (tests/e2e/chromium.py, over the DevTools Protocol).

The store is SQLite filled with known data: the README's worked allocation example
(python_processor/tests/allocation_data.py: one m5.large, one hour, three pods) and,
before it, five hours of priced traces in four domains, orphans named unattributed, a
trace still waiting for its root and unpriced spans, so that every part of the page has
something to show. The test asserts what a person would see: no console errors, no
request of any kind, a chart drawn, a screenshot that is not blank, and every figure on
the page equal to the document ``--json`` printed from the same run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from spancost.report import format_money
from spancost.store import SQLiteStore
from spancost.totals.aggregate import SpanContribution, ns_from_utc

from tests.e2e.chromium import png_pixels, running_browser
from tests.e2e.harness import ROOT, SPANCOST
from tests.waiting import wait_for


def _load(name: str) -> ModuleType:
    # By path: python_processor/tests is another `tests` package than this tree's.
    spec = importlib.util.spec_from_file_location(
        f"spancost_test_{name}", ROOT / "python_processor" / "tests" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


allocation = _load("allocation_data")
figures = _load("html_figures")
resolve, shown_as = figures.resolve, figures.shown_as

PROMO = '<b>promo</b> & "deals"'  # a name from a span: escaped on the page, never markup
WINDOW = ["--from", "2025-01-31T07:00:00Z", "--to", "2025-01-31T13:00:00Z", "--top", "3"]
FIRST_DOMAIN_COLOUR = (0x4E, 0x79, 0xA7)  # htmlreport.js's PALETTE[0]: the costliest domain
SECOND = 10**9


def trace(number: int, ingest: datetime, costs: list[float], **root: Any) -> list[SpanContribution]:
    """One trace's spans, started a minute before `ingest`; a root only if `root` names
    its transaction; a span of cost 0 is unpriced (``unknown_instance_type``)."""
    start = ns_from_utc(ingest) - 60 * SECOND
    return [
        SpanContribution(
            trace_id=f"{number:032x}",
            span_id=f"{index + 1:016x}",
            start_ns=start + index,
            end_ns=start + index + SECOND,
            cost_usd=cost,
            unpriced_reason=None if cost else root.get("reason", "unknown_instance_type"),
            is_root=index == 0 and "transaction" in root,
            name="GET /",
            service="web",
            environment="production",
            transaction_attribute=root.get("transaction") if index == 0 else None,
        )
        for index, cost in enumerate(costs)
    ]


def fill(path: Path) -> None:
    store = SQLiteStore(path, allocation.CONFIG)
    store.migrate()
    number = 1000
    for hour in range(7, 12):
        ingest = allocation.HOUR.replace(hour=hour, minute=20)
        spans: list[SpanContribution] = []
        for n in range(hour - 4):
            number += 1
            spans += trace(number, ingest, [0.02 * (n + 1), 0.01, 0.0], transaction="checkout")
        for _ in range(2):
            number += 1
            spans += trace(number, ingest, [0.005, 0.03], transaction="search")
        number += 1
        spans += trace(number, ingest, [0.006], transaction="browse")
        if hour in (9, 10):
            number += 1
            spans += trace(number, ingest, [0.05, 0.0], transaction=PROMO,
                           reason="sidecar_unavailable")  # fmt: skip
        number += 1
        spans += trace(number, ingest, [0.003, 0.001])  # no root: unattributed later
        allocation.write_spans(store, spans, ingest)
    # The worked example's hour (11:00) is over at NOW (12:30); one trace still waits.
    allocation.write_spans(
        store, [*allocation.hand_case_spans(), *trace(9999, allocation.NOW, [0.002])]
    )
    store.write_usage([(allocation.NODE, allocation.NODE_PRICE)], allocation.PODS, allocation.NOW)
    store.attribute_orphans(allocation.NOW, timedelta(minutes=10), "(unattributed)")
    store.close()


def required_keys(document: dict[str, Any]) -> set[str]:
    """Every figure the page must show."""
    keys = {"window.from", "window.to", "window.hours", "currency", "total.cost",
            "total.traces", "total.cost_per_trace", "unattributed.share", "unattributed.cost",
            "unattributed.traces", "unpriced.share", "unpriced.spans", "pending.traces",
            "pending.cost", "allocation.bill", "allocation.transactions_total",
            "allocation.untraced_total", "allocation.per_request_total",
            "allocation.idle.cost", "allocation.idle.share"}  # fmt: skip
    for name in ("transactions", "domains"):
        for index, item in enumerate(document[name]):
            keys |= {
                f"{name}.{index}.{field}"
                for field in item
                if field not in ("spans", "unpriced_spans")
            }
    for index, _ in enumerate(document["unpriced"]["reasons"]):
        keys |= {f"unpriced.reasons.{index}.reason", f"unpriced.reasons.{index}.spans"}
    for index, _ in enumerate(document["hourly"]):
        keys |= {f"hourly.{index}.hour", f"hourly.{index}.cost", f"hourly.{index}.traces"}
    split = document["allocation"]
    for name in ("transactions", "domains", "untraced"):
        for index, item in enumerate(split[name]):
            keys |= {f"allocation.{name}.{index}.{field}" for field in item}
    return keys


def report(database: Path, page_path: Path, *window: str) -> dict[str, Any]:
    """``spancost report --html page_path --json`` (the real CLI); the document printed."""
    run = subprocess.run(  # noqa: S603 - our own CLI
        [SPANCOST, "report", "--database-url", f"sqlite://{database}", *window,
         "--html", str(page_path), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"wrote {page_path}" in run.stderr
    document: dict[str, Any] = json.loads(run.stdout)
    return document


@dataclass
class Seen:
    """What the browser showed of a page."""

    figures: list[tuple[str, str, str]]
    """(data-key, data-value, text) of every figure in the DOM."""
    embedded: str
    chart: dict[str, Any]
    png: bytes
    legend: list[tuple[str, str]]
    """(label, value) of the chart's legend with the pointer on the hour asked for."""


# The chart's box, series, legend and the colours its canvas holds.
CHART = """(() => {
  const box = document.getElementById('hourly-chart');
  const canvas = box.querySelector('canvas');
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  for (let i = 0; i < pixels.length; i += 4)
    colours.add(pixels[i] << 16 | pixels[i + 1] << 8 | pixels[i + 2]);
  return {drawn: box.dataset.drawn, series: Number(box.dataset.series),
          labels: [...box.querySelectorAll('.u-series .u-label')].map(e => e.textContent),
          colours: [...colours]};
})()"""


# Where the pointer goes for hour `index` of `document`: the plot's x scale runs from
# half an hour before the first hour to half an hour after the last (htmlreport.js).
POINT_AT = """((index) => {
  const over = document.querySelector('#hourly-chart .u-over').getBoundingClientRect();
  const report = JSON.parse(document.getElementById('spancost-report').textContent);
  const hours = report.hourly.map(hour => Date.parse(hour.hour) / 1000);
  const low = hours[0] - 1800, high = hours[hours.length - 1] + 1800;
  return [over.left + over.width * (hours[index] - low) / (high - low),
          over.top + over.height * 0.9];
})"""
LEGEND = (
    "[...document.querySelectorAll('#hourly-chart .u-series')]"
    ".map(e => [e.querySelector('.u-label').textContent,"
    " e.querySelector('.u-value').textContent])"
)


def open_in_chromium(page_path: Path, hover_hour: int = 0) -> Seen:
    """The page opened in headless Chromium at 1280 x 1000, then the pointer moved onto
    the chart's `hover_hour`; fails on any console error or on any request but the
    page's own."""
    with running_browser() as browser:
        page = browser.new_page(1280, 1000)
        url = page_path.as_uri()
        page.open(url)
        png = page.screenshot()
        x, y = page.evaluate(f"{POINT_AT}({hover_hour})")
        page.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        wait_for(lambda: page.evaluate(LEGEND)[0][1] != "whole window", 10, "the legend")
        seen = Seen(
            figures=[
                (key, value, text)
                for key, value, text in page.evaluate(
                    "[...document.querySelectorAll('[data-key]')]"
                    ".map(e => [e.dataset.key, e.dataset.value, e.textContent])"
                )
            ],
            embedded=page.evaluate("document.getElementById('spancost-report').textContent"),
            chart=page.evaluate(CHART),
            png=png,
            legend=[(label, value) for label, value in page.evaluate(LEGEND)],
        )
        problems, requested = page.problems(), page.requested()
        browser_log = browser.log()
    screenshot = page_path.with_suffix(".png")
    screenshot.write_bytes(seen.png)
    print(f"screenshot: {screenshot}")
    assert problems == [], f"console errors: {problems}\n{browser_log}"
    assert requested == [url], "the page must load nothing but itself"
    return seen


def assert_figures_are_the_documents(seen: Seen, document: dict[str, Any]) -> set[str]:
    """Every figure in the DOM is the document's value, written as the table writes it;
    the keys seen."""
    assert json.loads(seen.embedded) == document
    for key, value, text in seen.figures:
        assert json.loads(value) == resolve(document, key), key
        assert text == shown_as(key, resolve(document, key)), key
    return {key for key, _, _ in seen.figures}


def screenshot_colours(png: bytes) -> Counter[bytes]:
    """How many pixels of each colour (RGB) the screenshot has."""
    width, height, rows = png_pixels(png)
    assert (width, height) == (1280, 1000)
    step = len(rows[0]) // width
    return Counter(row[x : x + 3] for row in rows for x in range(0, len(row), step))


def test_the_page_shows_the_json_reports_numbers_in_a_real_browser(tmp_path: Path) -> None:
    database = tmp_path / "totals.db"
    fill(database)
    page_path = tmp_path / "report.html"
    document = report(database, page_path, *WINDOW)
    # The data reaches every part of the page.
    assert document["allocation"] is not None and document["allocation"]["untraced"]
    assert document["pending"]["traces"] == 1
    assert document["unattributed"]["traces"] == 5
    assert [reason["reason"] for reason in document["unpriced"]["reasons"]] == [
        "unknown_instance_type", "sidecar_unavailable"
    ]  # fmt: skip
    assert PROMO in [item["name"] for item in document["transactions"]]
    assert len(document["domains"]) == 3  # --top 3 of 4: the chart has "other domains"
    assert page_path.stat().st_size < 150_000

    costliest = max(range(len(document["hourly"])), key=lambda i: document["hourly"][i]["cost"])
    seen = open_in_chromium(page_path, hover_hour=costliest)

    shown = assert_figures_are_the_documents(seen, document)
    assert required_keys(document) <= shown, sorted(required_keys(document) - shown)
    assert PROMO in [text for key, _, text in seen.figures if key.endswith(".name")]
    domains = [item["name"] for item in document["domains"]]
    assert seen.chart["drawn"] == "true"
    assert seen.chart["series"] == len(domains) + 1  # the top domains and the others
    assert seen.chart["labels"] == ["hour (UTC)", "other domains", *reversed(domains)]
    first = FIRST_DOMAIN_COLOUR
    assert first[0] << 16 | first[1] << 8 | first[2] in seen.chart["colours"]
    colours = screenshot_colours(seen.png)
    assert len(colours) > 16, "the screenshot is blank"
    assert colours.most_common(1)[0][1] < 0.95 * 1280 * 1000, "the screenshot is nearly blank"
    assert bytes(first) in colours, "no bar of the costliest domain in the screenshot"
    # The pointer on an hour: the legend gives that hour's cost of each domain.
    hour = document["hourly"][costliest]
    listed = [hour["domains"].get(name, 0.0) for name in domains]
    others = max(0.0, hour["cost"] - sum(listed))  # summed in the script's order
    assert seen.legend == [
        ("hour (UTC)", shown_as("hour", hour["hour"])),
        ("other domains", format_money(others)),
        *reversed([(name, format_money(cost)) for name, cost in zip(domains, listed, strict=True)]),
    ]


def test_an_empty_window_draws_an_empty_chart(tmp_path: Path) -> None:
    database = tmp_path / "empty.db"
    store = SQLiteStore(database, allocation.CONFIG)
    store.migrate()
    store.close()
    page_path = tmp_path / "empty.html"
    window = ["--from", "2025-01-31T07:00:00Z", "--to", "2025-01-31T08:00:00Z"]
    document = report(database, page_path, *window, "--currency", "EUR", "--rate", "EUR=0.92")
    assert document["allocation"] is None and document["total"]["share"] is None

    seen = open_in_chromium(page_path)

    shown = assert_figures_are_the_documents(seen, document)
    assert {"total.cost", "usd_rate", "hourly.0.cost", "unattributed.share"} <= shown
    assert (seen.chart["drawn"], seen.chart["series"]) == ("true", 0)
    assert len(screenshot_colours(seen.png)) > 16, "the screenshot is blank"
