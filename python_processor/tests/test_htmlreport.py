"""`spancost.htmlreport` and ``spancost report --html``: the page embeds the ``--json``
document and shows exactly its numbers, loads nothing, and escapes what spans named.

The page in a real browser is tests/e2e/test_html_report.py."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from spancost.cli import cli
from spancost.htmlreport import UPLOT_VERSION, render_html
from spancost.report import build_allocation, build_report, to_json
from spancost.store import SQLiteStore
from spancost.store.base import AllocatedRow, HourRow, ReconcileRow, SpendRow
from tests.allocation_data import CONFIG, NODE, NODE_PRICE, NOW, PODS, hand_case_spans, write_spans
from tests.html_figures import resolve, shown_as

SINCE = datetime(2025, 1, 30, 12, 30, tzinfo=UTC)
UNTIL = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
FIRST, LAST = datetime(2025, 1, 30, 12, tzinfo=UTC), datetime(2025, 1, 31, 12, tzinfo=UTC)
HOSTILE = '</script><script>alert("x")</script> & <b>'
"""A transaction name as a span could send it."""


def document(**overrides: Any) -> dict[str, Any]:
    allocated = [
        AllocatedRow("transaction", "payments", "checkout", "production", "shop", "web",
                     0.03, 1200.0, 24.0, 0.25),
        AllocatedRow("transaction", "payments", HOSTILE, "production", "shop", "web",
                     0.01, 300.0, 6.0),
        AllocatedRow("untraced", "", "", "production", "data", "StatefulSet/postgres",
                     0.02, 0.0, 0.0),
        AllocatedRow("idle", "", "", "", "", "", 0.036, 0.0, 0.0),
    ]  # fmt: skip
    nodes = [ReconcileRow(LAST, "ip-10-0-1-5", 0.096, 0.04, 0.02, 0.036, "bundled", "2025-01-01",
                          None)]  # fmt: skip
    arguments: dict[str, Any] = {
        "since": SINCE,
        "until": UNTIL,
        "transactions": [SpendRow("checkout", 6.0, 3, 12), SpendRow(HOSTILE, 3.0, 2, 4)],
        "unattributed": [SpendRow("(unattributed)", 1.0, 1, 1)],
        "domains": [
            SpendRow("payments", 6.0, 3, 12),
            SpendRow(HOSTILE, 3.0, 2, 4),
            SpendRow("(unattributed)", 1.0, 1, 1),
            SpendRow("", 0.5, 1, 2),
        ],
        "hours": [HourRow(FIRST, 4.0, 3, 9), HourRow(LAST, 6.0, 3, 8)],
        "domain_hours": [
            HourRow(FIRST, 3.0, 2, 7, "payments"),
            HourRow(FIRST, 1.0, 1, 2, HOSTILE),
            HourRow(LAST, 3.0, 1, 5, "payments"),
            HourRow(LAST, 2.0, 1, 2, HOSTILE),
            HourRow(LAST, 1.0, 1, 1, "(unattributed)"),
        ],
        "coverage": {"payments": (12, 3), HOSTILE: (4, 0), "(unattributed)": (1, 1)},
        "reasons": [("unknown_instance_type", 3), ("sidecar_unavailable", 1)],
        "top": 10,
        "currency": "EUR",
        "rate": 0.5,
        "excluded_environments": ["staging"],
        "allocation": build_allocation(allocated, nodes, top=10, rate=0.5),
    }
    arguments.update(overrides)
    return to_json(build_report(**arguments))


class Page(HTMLParser):
    """What a test needs of the page: the figures, the scripts, every URL-bearing
    attribute and the Content-Security-Policy."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: list[tuple[str, str, str]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.references: list[str] = []
        self.policy = ""
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.references += [
            f"{tag} {name}={value}" for name, value in attrs if name in ("src", "href", "srcset")
        ]
        if tag == "link":
            self.references.append(f"link {attributes}")
        if attributes.get("http-equiv") == "Content-Security-Policy":
            self.policy = attributes["content"] or ""
        if tag == "script" or "data-key" in attributes:
            self._open.append((tag, attributes, []))

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, attributes, parts = self._open.pop()
            text = "".join(parts)
            if tag == "script":
                self.scripts.append((attributes, text))
            else:
                self.figures.append((attributes["data-key"] or "", attributes["data-value"] or "",
                                     text))  # fmt: skip


def test_the_page_embeds_the_json_document() -> None:
    expected = document()
    page = Page(render_html(expected))
    (data,) = [
        text for attributes, text in page.scripts if attributes.get("id") == "spancost-report"
    ]
    assert json.loads(data) == json.loads(json.dumps(expected))
    assert "</" not in data and "<" not in data  # no name can end the data block


def test_every_figure_shown_is_the_documents() -> None:
    expected = document()
    page = Page(render_html(expected))
    for key, value, text in page.figures:
        assert json.loads(value) == resolve(expected, key), key
        assert text == shown_as(key, resolve(expected, key)), key
    shown = {key for key, _, _ in page.figures}
    required = {"total.cost", "total.traces", "total.cost_per_trace", "unattributed.share",
                "unattributed.cost", "unpriced.share", "unpriced.spans", "pending.traces",
                "pending.cost", "currency", "usd_rate", "window.hours", "allocation.bill",
                "allocation.transactions_total", "allocation.untraced_total",
                "allocation.per_request_total", "allocation.idle.cost", "allocation.idle.share",
                "excluded_environments.0"}  # fmt: skip
    for name in ("transactions", "domains"):
        for index, item in enumerate(expected[name]):
            required |= {f"{name}.{index}.{field}" for field in item}
    required -= {key for key in required if key.endswith(("spans", "unpriced_spans"))}
    for index in range(len(expected["hourly"])):
        required |= {f"hourly.{index}.{field}" for field in ("hour", "cost", "traces")}
    for index in range(len(expected["unpriced"]["reasons"])):
        required |= {f"unpriced.reasons.{index}.reason", f"unpriced.reasons.{index}.spans"}
    for name in ("transactions", "untraced", "domains"):
        for index, item in enumerate(expected["allocation"][name]):
            required |= {f"allocation.{name}.{index}.{field}" for field in item}
    assert required - shown == set()
    # The numbers as the table writes them, in the report's currency.
    assert [text for key, _, text in page.figures if key == "total.cost"] == ["5.0000"]


def test_the_page_loads_nothing_and_runs_only_its_own_scripts() -> None:
    text = render_html(document())
    page = Page(text)
    assert page.references == []
    assert "@import" not in text and "url(" not in text
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in page.policy.split(";") if part.strip()
    )
    assert directives["default-src"] == ["'none'"]  # no fetch, image, font or frame
    executable = [source for attributes, source in page.scripts if "type" not in attributes]
    assert len(executable) == 2  # uPlot, then the chart
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"
        for source in executable
    ]
    assert directives["script-src"] == hashes
    assert f"uPlot {UPLOT_VERSION}" in executable[0] and "MIT License" in executable[0]


def test_names_from_spans_are_text_not_markup() -> None:
    text = render_html(document())
    assert HOSTILE not in text
    assert text.count("<script") == 3 and text.count("</script>") == 3
    page = Page(text)
    names = [shown for key, _, shown in page.figures if key.endswith(".name")]
    assert HOSTILE in names


def test_without_allocation_or_unpriced_spans_those_parts_say_so() -> None:
    page_text = render_html(document(allocation=None, coverage=None, reasons=[]))
    assert "The nodes' bill" not in page_text
    assert "Every span of the window was priced." in page_text


def test_the_vendored_uplot_is_the_one_its_source_names() -> None:
    folder = resources.files("spancost").joinpath("vendor/uplot")
    source = folder.joinpath("SOURCE").read_text()
    assert f"uPlot {UPLOT_VERSION}" in source and f"uplot@{UPLOT_VERSION}" in source
    named = dict(re.findall(r"(\S+)\s+# sha256 ([0-9a-f]{64})", source))
    assert set(named) == {"dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"}
    for path, digest in named.items():
        content = folder.joinpath(path.removeprefix("dist/")).read_bytes()
        assert hashlib.sha256(content).hexdigest() == digest, path
    assert f"(v{UPLOT_VERSION})" in folder.joinpath("uPlot.iife.min.js").read_text()[:80]


def test_a_day_of_a_few_domains_is_a_small_page() -> None:
    hours = [HourRow(FIRST + timedelta(hours=n), 1.0, 1, 1) for n in range(25)]
    size = len(render_html(document(hours=hours)).encode())
    assert size < 100_000, size  # uPlot is 51 kB of it


# -- the CLI ------------------------------------------------------------------------------

WINDOW = ["--from", "2025-01-31T11:00:00Z", "--to", "2025-01-31T11:59:00Z"]


@pytest.fixture
def url(tmp_path: Path) -> str:
    path = tmp_path / "totals.db"
    store = SQLiteStore(path, CONFIG)
    store.migrate()
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.close()
    return f"sqlite://{path}"


def test_report_html_writes_the_page_of_the_json_document(url: str, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli, ["report", "--database-url", url, *WINDOW, "--html", str(target), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"wrote {target}\n"
    printed = json.loads(result.stdout)
    assert printed["allocation"] is not None
    assert Path(target).read_text() == render_html(printed)
    assert list(tmp_path.glob(".*")) == []  # the partial file was renamed


def test_report_html_alone_prints_nothing(url: str, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--database-url", url, *WINDOW, "--html",
                                      str(target)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert target.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--html", "{tmp}/report.html", "--reconcile"], "--html and --reconcile exclude"),
        (["--html", "{tmp}/missing/report.html"], "there is no directory"),
    ],
)
def test_report_html_usage_errors(
    url: str, tmp_path: Path, arguments: list[str], message: str
) -> None:
    given = [argument.format(tmp=tmp_path) for argument in arguments]
    result = CliRunner().invoke(cli, ["report", "--database-url", url, *WINDOW, *given])
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.glob("*.html")) == []
