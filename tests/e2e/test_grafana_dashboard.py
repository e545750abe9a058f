"""The Grafana dashboard (configs/grafana/spancost.json): every query of every panel
evaluated by a real Prometheus that scraped the real collector and the real guard after
known traffic, and compared with the value that traffic implies.

The stack: configs/local.yaml (its totals sink charging namespaces, ``domains.owner`` on
``k8s.namespace.name`` as the DaemonSet does, into SQLite) with a test OTLP sink for the
spans as priced, ``spancost guard`` looping over the same SQLite file (dry run, no
Kubernetes API: it still reads and exposes every number), and Debian's Prometheus
scraping the collector's cost metrics, its own telemetry and the guard every 0.5 s.
The traffic is ``spancost demo``'s (checkout, search, browse; an unpriceable call; CI
dropped) with each namespace's pod named (``k8s.pod.uid``) and an LLM call of an unknown
model, and the sidecar stopped for one batch of each (a timeout, then a restart). Node
usage for the pods, and a pod that serves nothing, is written into the store, so the
guard holds budgets against allocated spend with idle and untraced cost to show.

What each panel must show comes from the traffic: the spans at the sink (live cost
metrics), the requests sent to the sidecar and the faults made (sidecar health), and
``spancost report --json`` on the same store with the budgets file (the guard's panels).

**Rate panels, exactly.** ``rate()`` and ``increase()`` extrapolate to the ends of their
range and never count a series' first sample. So every series a panel reads exists
before the measured traffic: a warm-up (one request of each kind, and one sidecar fault)
is sent and scraped first. Then, per scrape target, T0 is the last scrape before the
measured traffic (checked: every series read has a sample at exactly T0, with the
warm-up's values) and T1 the last scrape once everything has arrived (checked likewise).
Each query is evaluated at T1 with ``$__rate_interval`` and ``$__range`` both T1 - T0:
Prometheus 2's range selectors include their start, so the first sample of the range is
at its start and the last at its end, nothing is extrapolated, and ``increase()`` is
exactly what the traffic added and ``rate()`` that over T1 - T0 (relative 1e-9). The
dashboard's other variables are substituted as Grafana does: All (``.*``), one value,
and a value no series has (every query that uses a variable must then return nothing).

A panel added without an expectation here, or an expectation without its panel, fails
the test; so does a metric name a query reads that the scrape did not expose.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from spancost.allocation.pricing import NodePrice
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.demo import DEFAULT_SEED, build_batches, plan_requests
from spancost.store import SQLiteStore

from tests.e2e.harness import ROOT, SPANCOST, Collector, OtlpSink, attrs, free_port
from tests.e2e.prometheus import PrometheusServer
from tests.e2e.raw import RawClient
from tests.e2e.test_cost_metrics import Expected, wait_added_up
from tests.e2e.test_demo import spancost, start_local_collector, stored_spans
from tests.waiting import wait_for

Start = Callable[..., Collector]
Spans = list[tuple[trace_pb2.ResourceSpans, trace_pb2.ScopeSpans, trace_pb2.Span]]
Labels = tuple[tuple[str, str], ...]
Values = dict[Labels, float]

DASHBOARD = ROOT / "configs" / "grafana" / "spancost.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTINS = {"__rate_interval", "__range"}
TRANSACTIONS = ("checkout", "search", "browse")
REQUESTS = 5
"""Requests of each transaction in the measured traffic (the warm-up sends one)."""
NODE = "ip-10-0-1-5.ec2.internal"
NODE_PRICE = NodePrice(0.384, "bundled", "ec2.on_demand.duration", "2026-01-01")
UNTRACED = ("postgres-0", "data", "StatefulSet/postgres")
EUR = 0.92
BUDGET_RATIOS = {"storefront": ("USD", 0.5), "search-api": ("EUR", 0.9), "payments": ("USD", 1.25)}
"""Budget domains, their currency and the share of it their spend makes: ok, warn, breach."""
LEVELS = {"ok": 0.0, "warn": 1.0, "breach": 2.0}
COST_METRICS = {
    "spancost_cost_usd_total",
    "spancost_spans_priced_total",
    "spancost_spans_unpriced_total",
}
# As Prometheus stores them: the collector's own telemetry is served in the text format
# 0.0.4, its counters without a `_total` suffix.
COLLECTOR_METRICS = {
    "otelcol_extension_python_sidecar_restarts",
    "otelcol_processor_python_requests_failed",
    "otelcol_processor_python_requests_sent",
    "otelcol_processor_python_round_trip_duration_bucket",
    "otelcol_processor_python_round_trip_duration_sum",
    "otelcol_processor_python_round_trip_duration_count",
    "otelcol_extension_python_sink_gauge",
}
METRIC = re.compile(r"\b((?:spancost|otelcol)_[a-z0-9_]+)\b")
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
REL = 1e-9
RESTARTED = "sidecar restarted and configured"


# -- the dashboard ----------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_the_dashboard_is_importable_and_every_panel_reads_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    assert (dashboard["uid"], dashboard["title"]) == (
        "spancost-cost",
        "spancost: cost, budgets and sidecar health",
    )
    assert dashboard["schemaVersion"] == 39 and dashboard["id"] is None
    (needed,) = dashboard["__inputs"]
    assert (needed["type"], needed["pluginId"]) == ("datasource", "prometheus")
    declared = variables(dashboard)
    source = declared["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    assert source["current"]["value"] == f"${{{needed['name']}}}"
    for name, variable in declared.items():
        if name != "datasource":
            assert variable["type"] == "query" and variable["datasource"] == DATASOURCE, name
            assert variable["includeAll"] and variable["allValue"] == ".*", name
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [panel["title"] for panel in query_panels(dashboard)]
    assert len(titles) == len(set(titles)), "panel titles must be unique (the test keys on them)"
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        if panel["type"] == "row":
            assert "targets" not in panel, panel["title"]
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (panel["title"], target["refId"])
            assert target["expr"].strip(), (panel["title"], target["refId"])
            used = {a or b for a, b in VARIABLE.findall(target["expr"])}
            assert used <= declared.keys() | GRAFANA_BUILTINS, (panel["title"], used)
    assert {p["title"]: p["fieldConfig"]["defaults"]["unit"] for p in query_panels(dashboard)} == {
        title: expected.unit for title, expected in PANELS.items()
    }


def test_every_panel_and_query_has_an_expectation() -> None:
    """A panel (or a query of one) added without an expectation fails, and so does an
    expectation whose panel is gone."""
    have = {p["title"]: {t["refId"] for t in p["targets"]} for p in query_panels(load_dashboard())}
    assert have == {title: set(expected.targets) for title, expected in PANELS.items()}


# -- what the traffic implies -----------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Values of the dashboard's variables, as Grafana substitutes them into a query."""

    environment: str
    namespace: str
    domain: str

    def substitute(self, expr: str, window_ms: int) -> str:
        values = {
            "environment": self.environment,
            "namespace": self.namespace,
            "domain": self.domain,
            "__rate_interval": f"{window_ms}ms",
            "__range": f"{window_ms}ms",
        }
        return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


ALL = Selection(".*", ".*", ".*")
ONE = Selection("production", "storefront", "payments")
NOTHING = Selection("nowhere", "nowhere", "nowhere")


@dataclass
class Facts:
    """What the traffic was, and what it made: the reference every panel is held to."""

    traffic: Spans
    """The spans the measured traffic left at the sink, as priced."""
    stored: Spans
    """Every span at the sink (and in the store): the guard's 24 h."""
    seconds: float
    """T1 - T0 of the cost metrics' target: what rate() divides by."""
    report: dict[str, Any]
    budgets: dict[str, tuple[str, float]]
    """Domain: (currency, limit)."""
    instance: str
    """The collector's own telemetry target."""
    requests: int
    """Requests the collector sent its sidecar between its T0 and T1."""
    failures: int
    restarts: int
    buckets: dict[float, float] = field(default_factory=dict)
    """The round trip histogram's cumulative buckets between T0 and T1, by upper bound."""
    duration_ms: float = 0.0
    """Its sum between T0 and T1."""


@dataclass(frozen=True)
class PanelExpectation:
    unit: str
    targets: dict[str, Callable[[Facts, Selection], Values]]


def key(**labels: str) -> Labels:
    """A result's labels; a label Prometheus leaves out when it is empty."""
    return tuple(sorted((k, v) for k, v in labels.items() if v))


def live_spans(facts: Facts, selection: Selection) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The measured spans (resource, span attributes) the variables select."""
    chosen = []
    for rs, _, span in facts.traffic:
        resource = attrs(rs.resource.attributes)
        environment = resource.get(
            "deployment.environment.name", resource.get("deployment.environment", "")
        )
        namespace = resource.get("k8s.namespace.name", "")
        if re.fullmatch(selection.environment, environment) and re.fullmatch(
            selection.namespace, namespace
        ):
            chosen.append((resource, attrs(span.attributes)))
    return chosen


def cost_by(label: str, attribute: str, *, per_hour: bool) -> Callable[[Facts, Selection], Values]:
    def expected(facts: Facts, selection: Selection) -> Values:
        groups: dict[Labels, list[float]] = {}
        for resource, values in live_spans(facts, selection):
            if "cost.usd" in values:
                groups.setdefault(key(**{label: resource.get(attribute, "")}), []).append(
                    values["cost.usd"]
                )
        scale = 3600 / facts.seconds if per_hour else 1.0
        return {labels: math.fsum(usd) * scale for labels, usd in groups.items()}

    return expected


def unpriced_share(facts: Facts, selection: Selection) -> Values:
    spans = [values for _, values in live_spans(facts, selection)]
    priced = sum("cost.usd" in values for values in spans)
    unpriced = sum("cost.unpriced_reason" in values for values in spans)
    return {(): unpriced / (unpriced + priced)} if priced else {}


def unpriced_by_reason(facts: Facts, selection: Selection) -> Values:
    reasons = Counter(
        values["cost.unpriced_reason"]
        for _, values in live_spans(facts, selection)
        if "cost.unpriced_reason" in values
    )
    return {key(cost_unpriced_reason=reason): float(n) for reason, n in reasons.items()}


def allocation(facts: Facts) -> dict[str, Any]:
    document: dict[str, Any] = facts.report["allocation"]
    return document


def budget_spend(facts: Facts, domain: str) -> float:
    """The domain's allocated spend in its budget's currency, as the report shows it."""
    (usd,) = [line["cost"] for line in allocation(facts)["domains"] if line["name"] == domain]
    currency, _ = facts.budgets[domain]
    return float(usd) * (EUR if currency == "EUR" else 1.0)


def budgets(
    value: Callable[[Facts, str], float], *, currency: bool = False
) -> Callable[[Facts, Selection], Values]:
    def expected(facts: Facts, selection: Selection) -> Values:
        return {
            key(domain=domain, currency=facts.budgets[domain][0] if currency else ""): value(
                facts, domain
            )
            for domain in facts.budgets
            if re.fullmatch(selection.domain, domain)
        }

    return expected


def level(facts: Facts, domain: str) -> float:
    ratio = budget_spend(facts, domain) / facts.budgets[domain][1]
    return LEVELS["breach" if ratio >= 1 else "warn" if ratio >= 0.8 else "ok"]


def domain_unpriced(facts: Facts, domain: str) -> float:
    """Unpriced spans over spans the domain's namespace sent: the guard's coverage, each
    span charged to its own namespace as the sink charges it (the guard reads the store
    by the naming config the sink kept in it), as ``spancost report`` counts it."""
    spans = [
        span
        for rs, _, span in facts.stored
        if attrs(rs.resource.attributes).get("k8s.namespace.name") == domain
    ]
    unpriced = [span for span in spans if "cost.usd" not in attrs(span.attributes)]
    return len(unpriced) / len(spans) if spans else 0.0  # none: the guard shows 0


def allocated_kinds(facts: Facts, _: Selection) -> Values:
    split = allocation(facts)
    return {
        key(kind="transaction"): split["transactions_total"],
        key(kind="untraced"): split["untraced_total"],
        key(kind="idle"): split["idle"]["cost"],
        key(kind="per_request"): split["per_request_total"],
    }


def idle_and_untraced(facts: Facts, _: Selection) -> Values:
    split = allocation(facts)
    return {
        key(kind="idle"): split["idle"]["share"],
        key(kind="untraced"): math.fsum(line["share"] for line in split["untraced"]),
    }


def transactions(field_name: str) -> Callable[[Facts, Selection], Values]:
    def expected(facts: Facts, _: Selection) -> Values:
        return {
            key(transaction=line["name"]): line[field_name]
            for line in allocation(facts)["transactions"]
            if line[field_name] is not None
        }

    return expected


def quantile(q: float) -> Callable[[Facts, Selection], Values]:
    """Prometheus' histogram_quantile over the buckets' increase (bucketQuantile: linear
    within the bucket the rank falls in; the last finite bound in +Inf's)."""

    def expected(facts: Facts, _: Selection) -> Values:
        bounds = sorted(facts.buckets)
        rank = q * facts.buckets[math.inf]
        index = next(i for i, bound in enumerate(bounds) if facts.buckets[bound] >= rank)
        if bounds[index] == math.inf:
            return {(): bounds[-2]}
        start = bounds[index - 1] if index else 0.0
        below = facts.buckets[start] if index else 0.0
        inside = facts.buckets[bounds[index]] - below
        return {(): start + (bounds[index] - start) * (rank - below) / inside}

    return expected


def always(values: Callable[[Facts], Values]) -> Callable[[Facts, Selection], Values]:
    return lambda facts, _: values(facts)


PANELS: dict[str, PanelExpectation] = {
    "Cost per hour by namespace": PanelExpectation(
        "currencyUSD", {"A": cost_by("k8s_namespace_name", "k8s.namespace.name", per_hour=True)}
    ),
    "Cost per hour by service": PanelExpectation(
        "currencyUSD", {"A": cost_by("service_name", "service.name", per_hour=True)}
    ),
    "Cost in the time range by namespace": PanelExpectation(
        "currencyUSD", {"A": cost_by("k8s_namespace_name", "k8s.namespace.name", per_hour=False)}
    ),
    "Unpriced share of spans": PanelExpectation("percentunit", {"A": unpriced_share}),
    "Unpriced spans by reason": PanelExpectation("short", {"A": unpriced_by_reason}),
    "Budget used by domain": PanelExpectation(
        "percentunit", {"A": budgets(lambda f, d: budget_spend(f, d) / f.budgets[d][1])}
    ),
    "Spend and budget by domain": PanelExpectation(
        "none",
        {
            "A": budgets(budget_spend, currency=True),
            "B": budgets(lambda f, d: f.budgets[d][1], currency=True),
            "C": budgets(level),
        },
    ),
    "Spend basis": PanelExpectation("none", {"A": always(lambda _: {key(basis="allocated"): 1})}),
    "Unpriced share by domain (24 h)": PanelExpectation(
        "percentunit", {"A": budgets(domain_unpriced)}
    ),
    "Nodes' cost allocated (24 h)": PanelExpectation("currencyUSD", {"A": allocated_kinds}),
    "Idle and untraced share (24 h)": PanelExpectation("percentunit", {"A": idle_and_untraced}),
    "Top transactions by spend (24 h)": PanelExpectation(
        "currencyUSD", {"A": transactions("cost")}
    ),
    "Cost per request by transaction (24 h)": PanelExpectation(
        "currencyUSD", {"A": transactions("cost_per_request"), "B": transactions("requests")}
    ),
    "Sidecar restarts": PanelExpectation(
        "short", {"A": always(lambda f: {key(instance=f.instance): f.restarts})}
    ),
    "Failed sidecar requests by reason": PanelExpectation(
        "short", {"A": always(lambda f: {key(reason="timeout"): f.failures})}
    ),
    "Share of sidecar requests failing": PanelExpectation(
        "percentunit", {"A": always(lambda f: {(): f.failures / f.requests})}
    ),
    "Stores reachable": PanelExpectation(
        "none",
        {"A": always(lambda f: {key(instance=f.instance): 1.0}), "B": always(lambda _: {(): 1})},
    ),
    "Sidecar round trip": PanelExpectation(
        "ms",
        {
            "A": quantile(0.5),
            "B": quantile(0.99),
            "C": always(lambda f: {(): f.duration_ms / f.requests}),
        },
    ),
}


# -- the stack --------------------------------------------------------------------------


@dataclass
class Window:
    """One scrape target's samples before (T0) and after (T1) the measured traffic."""

    first: float
    last: float

    @property
    def ms(self) -> int:
        return round((self.last - self.first) * 1000)

    @classmethod
    def at(cls, when: float) -> Window:
        """A target whose panels read gauges only: one instant."""
        return cls(when, when)


class Prom:
    """Queries at a given instant (`PrometheusServer.query` asks at "now"), through the
    server's own API client."""

    def __init__(self, server: PrometheusServer) -> None:
        self.server = server

    def get(self, path: str, **params: str) -> Any:
        return self.server._get(path, **params)

    def at(self, expr: str, when: float) -> Values:
        data = self.get("/api/v1/query", query=expr, time=f"{when:.3f}")
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}

    def series(self, selector: str, when: float) -> set[Labels]:
        """The series a range selector finds at `when`."""
        data = self.get("/api/v1/query", query=selector, time=f"{when:.3f}")
        assert data["resultType"] == "matrix", (selector, data["resultType"])
        return {tuple(sorted(r["metric"].items())) for r in data["result"]}

    def last_scrape(self, instance: str, before: float) -> float:
        """When `instance` was last scraped at or before `before` (ms precision)."""
        data = self.get(
            "/api/v1/query", query=f'up{{instance="{instance}"}}[30s]', time=f"{before:.3f}"
        )
        (series,) = data["result"]
        return max(round(float(t), 3) for t, _ in series["values"])

    def names(self) -> set[str]:
        return set(self.get("/api/v1/label/__name__/values"))


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """Prometheus servers and guards a test starts, stopped after it (logs on failure)."""
    started: list[Any] = []
    yield started
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for process in started:
        process.stop()
        if failed:
            print(f"--- log of {process.log_path} ---\n{process.log()[-20000:]}")


class Guard:
    """``spancost guard`` as its Deployment runs it: the loop, /metrics, a dry run."""

    def __init__(self, workdir: Path, budgets: Path, database: Path, port: int) -> None:
        self.log_path = workdir / "guard.log"
        self.command = [
            str(SPANCOST), "guard", "--budgets", str(budgets),
            "--database-url", f"sqlite://{database}", "--interval", "1s", "--dry-run",
            "--metrics-listen", f"127.0.0.1:{port}",
            "--kubeconfig", str(workdir / "no-kubeconfig"),  # no API: numbers only
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Guard:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KUBECONFIG")}
        self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
            self.command, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, env=env
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_collector(
    collector: Start, sink: OtlpSink, tmp_path: Path
) -> tuple[Collector, dict[str, str], Path]:
    """configs/local.yaml as tests/e2e/test_demo.py runs it, with: its own telemetry on a
    free port, namespaces as the budget domains (as configs/daemonset.yaml), the sidecar
    restarted only when the test kills it (a stopped one must time out, not be replaced
    first), its sinks' gauges read every second, and a timeout two busy shared cores do
    not reach on an ordinary batch."""

    def adjusted(config: dict[str, Any], **kwargs: Any) -> Collector:
        port = free_port()
        reader = {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": port}}}}
        config["service"]["telemetry"] = {"metrics": {"readers": [reader]}}
        python = config["extensions"]["python"]
        python["health_check"] = {"interval": "1s", "timeout": "1s", "failure_threshold": 120}
        python["stats_interval"] = "1s"  # the sink's gauges, soon after a restart
        totals = python["sinks"]["totals"]["config"]
        totals["domains"] = {"owner": {"attribute": "k8s.namespace.name", "domains": {}}}
        config["processors"]["python/spancost"]["timeout"] = "2s"
        return collector(config, **kwargs)

    return start_local_collector(adjusted, sink, tmp_path)


# -- the traffic ------------------------------------------------------------------------


def pod_of(namespace: str) -> str:
    return f"{namespace}-7d9f8-x2x4q"


def _any(value: Any) -> common_pb2.AnyValue:
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    return common_pb2.AnyValue(string_value=value)


def traffic(requests: int) -> list[trace_service_pb2.ExportTraceServiceRequest]:
    """What ``spancost demo --requests N`` sends for three transactions, each namespace's
    spans from its one pod, and an assistant's LLM call of a model no price list knows
    (a second unpriced reason), in its own batch."""
    now = time.time_ns()
    plan = plan_requests(TRANSACTIONS, requests)
    batches = list(build_batches(plan, seed=DEFAULT_SEED, now_ns=now))
    for batch in batches:
        for rs in batch.resource_spans:
            namespace = attrs(rs.resource.attributes).get("k8s.namespace.name")
            if namespace:
                rs.resource.attributes.add(key="k8s.pod.uid", value=_any(pod_of(namespace)))
    assistant = trace_service_pb2.ExportTraceServiceRequest()
    rs = assistant.resource_spans.add()
    resource = {"service.name": "assistant", "deployment.environment.name": "production",
                "k8s.namespace.name": "assistant", "k8s.pod.uid": pod_of("assistant")}  # fmt: skip
    for name, value in resource.items():
        rs.resource.attributes.add(key=name, value=_any(value))
    span = rs.scope_spans.add().spans.add(
        trace_id=(now + 1).to_bytes(16, "big"), span_id=(now + 1).to_bytes(8, "big"),
        name="chat no-such-model-1", kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 300_000_000, end_time_unix_nano=now,
    )  # fmt: skip
    llm = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "no-such-model-1",
           "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
           "business.transaction": "assistant"}  # fmt: skip
    for name, value in llm.items():
        span.attributes.add(key=name, value=_any(value))
    return [*batches, assistant]


def send(c: Collector, batches: list[trace_service_pb2.ExportTraceServiceRequest]) -> set[bytes]:
    """Sends each batch in one export (one request to the sidecar); their trace ids."""
    client = RawClient(c.grpc_endpoint)
    try:
        for batch in batches:
            client.export(batch)
    finally:
        client.close()
    return {s.trace_id for b in batches for rs in b.resource_spans for ss in rs.scope_spans
            for s in ss.spans}  # fmt: skip


def sidecar_fault(c: Collector, faults: int) -> set[bytes]:
    """The sidecar stopped (SIGSTOP) while a batch is sent: the request times out and its
    span passes unpriced (``sidecar_unavailable``); then killed, and restarted by the
    collector. `faults`: how many this makes. The span's trace id."""
    sidecar = c.sidecar()
    sidecar.suspend()
    now = time.time_ns()
    batch = trace_service_pb2.ExportTraceServiceRequest()
    rs = batch.resource_spans.add()
    for name, value in {"service.name": "fault-probe",
                        "deployment.environment.name": "production"}.items():  # fmt: skip
        rs.resource.attributes.add(key=name, value=_any(value))
    rs.scope_spans.add().spans.add(
        trace_id=now.to_bytes(16, "big"), span_id=now.to_bytes(8, "big"), name="GET /probe",
        kind=trace_pb2.Span.SPAN_KIND_SERVER, start_time_unix_nano=now - 10**6,
        end_time_unix_nano=now,
    )  # fmt: skip
    sent = send(c, [batch])
    failed = "otelcol_processor_python_requests_failed"
    wait_for(lambda: c.metric(failed, reason="timeout") == faults, 30, f"{faults} timeouts")
    sidecar.kill()
    wait_for(lambda: c.log().count(RESTARTED) == faults, 60, f"sidecar restart {faults}")
    assert c.metric("otelcol_extension_python_sidecar_restarts") == faults
    return sent


def write_usage(database: Path, spans: Spans) -> None:
    """One node's hours under every span, each namespace's pod on it, and a database pod
    that served no traced request (untraced); what no pod requested is idle."""
    hour = 3600 * 10**9
    first = min(span.start_time_unix_nano for _, _, span in spans) // hour
    last = max(span.end_time_unix_nano for _, _, span in spans) // hour
    namespaces = sorted(
        {attrs(rs.resource.attributes).get("k8s.namespace.name", "") for rs, _, _ in spans} - {""}
    )
    store = SQLiteStore(database)
    try:
        for h in range(first, last + 1):
            node = NodeUsage(h * hour, NODE, 3600.0, "us-east-1", "m6i.2xlarge", "linux",
                             "on_demand", "us-east-1a", 8.0, 32.0)  # fmt: skip
            pods = [
                PodUsage(h * hour, pod_of(ns), NODE, 3600.0, 0.5, 1.0, ns, f"Deployment/{ns}")
                for ns in namespaces
            ]
            pods.append(PodUsage(h * hour, UNTRACED[0], NODE, 3600.0, 1.0, 4.0, *UNTRACED[1:]))
            store.write_usage([(node, NODE_PRICE)], pods, datetime.now(UTC))
    finally:
        store.close()


def production(batches: list[trace_service_pb2.ExportTraceServiceRequest]) -> int:
    """The spans of `batches` the collector lets through (CI's are dropped)."""
    return sum(
        len(ss.spans)
        for b in batches
        for rs in b.resource_spans
        if attrs(rs.resource.attributes).get("deployment.environment.name") != "ci"
        for ss in rs.scope_spans
    )


def metered(spans: Spans) -> Spans:
    """The spans the cost metrics count: priced, or unpriced with a reason (one that
    passed a stopped sidecar has ``sidecar_unavailable``)."""
    return [
        item
        for item in spans
        if {"cost.usd", "cost.unpriced_reason"} & attrs(item[2].attributes).keys()
    ]


# -- the test ---------------------------------------------------------------------------


@dataclass
class Stack:
    """The collector, its sink, Prometheus, and what has been sent so far."""

    c: Collector
    env: dict[str, str]
    database: Path
    sink: OtlpSink
    prom: Prom
    targets: dict[str, str]
    """Scrape targets: the cost metrics, the collector's own telemetry, the guard."""
    requests: int = 0
    """Requests the collector sent its sidecar: one per export."""
    spans: int = 0
    """Spans the collector let through to the sink."""

    def send(self, batches: list[trace_service_pb2.ExportTraceServiceRequest]) -> set[bytes]:
        self.requests += len(batches)
        self.spans += production(batches)
        return send(self.c, batches)

    def fault(self, faults: int) -> set[bytes]:
        self.requests += 1
        self.spans += 1
        return sidecar_fault(self.c, faults)

    def settled(self, faults: int) -> Spans:
        """Waits until every span sent is at the sink and in the store, and Prometheus has
        scraped the cost metrics and the sidecar's counters they made; the sink's spans."""
        spans = self.sink.wait_spans(self.spans, timeout=60)
        assert len(spans) == self.spans
        wait_added_up(self.prom.server, Expected(metered(spans)))
        counters = {
            "sum(otelcol_processor_python_requests_sent)": self.requests,
            "sum(otelcol_processor_python_requests_failed)": faults,
            "sum(otelcol_extension_python_sidecar_restarts)": faults,
            'min(otelcol_extension_python_sink_gauge{name="store_up"})': 1,
        }
        wait_for(
            lambda: all(
                self.prom.at(expr, time.time()) == {(): float(n)} for expr, n in counters.items()
            ),
            30,
            f"Prometheus to scrape the sidecar's counters {counters}",
            interval=0.25,
        )
        wait_for(lambda: stored_spans(self.database) == self.spans, 60, "the totals store")
        return spans

    def window(self, source: str, first: float, last: float) -> Window:
        """The target's last scrapes at `first` and `last`, checked: every series of
        `source` the dashboard reads has a sample at both, the same series."""
        instance = self.targets[source]
        window = Window(
            self.prom.last_scrape(instance, first), self.prom.last_scrape(instance, last)
        )
        names = "|".join(sorted(COST_METRICS if source == "cost" else COLLECTOR_METRICS))
        selector = f'{{__name__=~"{names}", instance="{instance}"}}[1ms]'
        at_first = self.prom.series(selector, window.first)
        assert at_first, f"no series of {source} at T0"
        assert at_first == self.prom.series(selector, window.last), (
            f"{source}: series came or went between T0 and T1 (the warm-up must make them all)"
        )
        return window


def test_every_panel_shows_what_the_traffic_made(
    sink: OtlpSink, collector: Start, processes: list[Any], tmp_path: Path
) -> None:
    c, env, database = start_collector(collector, sink, tmp_path)
    targets = {
        "cost": c.config["exporters"]["prometheus/cost"]["endpoint"],
        "collector": f"127.0.0.1:{c.metrics_port}",
        "guard": f"127.0.0.1:{free_port()}",
    }
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = PrometheusServer(list(targets.values()), workdir)
    processes.append(server)
    stack = Stack(c, env, database, sink, Prom(server.start()), targets)
    version = stack.prom.get("/api/v1/status/buildinfo")["version"]
    assert version.startswith("2."), (
        f"Prometheus {version}: the exact checks rely on Prometheus 2's range selectors "
        "including their start (Prometheus 3's exclude it: evaluate one millisecond wider)"
    )

    # The warm-up: every series the panels read, scraped before T0.
    warm = stack.fault(1) | stack.send(traffic(1))
    warmed = stack.settled(1)
    requests_before = stack.requests
    t0 = time.time()
    # A scrape begun before t0 may still be reading; the traffic waits for the next one.
    wait_for(
        lambda: all(
            stack.prom.last_scrape(stack.targets[source], time.time()) > t0
            for source in ("cost", "collector")
        ),
        30,
        "a scrape after T0",
        interval=0.1,
    )
    # The measured traffic.
    measured = stack.fault(2) | stack.send(traffic(REQUESTS))
    spans = stack.settled(2)
    write_usage(database, spans)
    report = spancost(env, "report", "--json", "--database-url", f"sqlite://{database}")
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["allocation"] is not None, "no allocation: the guard would hold estimates"
    budgets = start_guard(stack, processes, tmp_path, document)
    t1 = time.time()

    windows = {
        "cost": stack.window("cost", t0, t1),
        "collector": stack.window("collector", t0, t1),
        "guard": Window.at(stack.prom.last_scrape(stack.targets["guard"], t1)),
    }
    assert not warm & measured
    check_warm_up(stack.prom, windows, warmed, spans)
    facts = Facts(
        traffic=[item for item in spans if item[2].trace_id in measured],
        stored=spans,
        seconds=windows["cost"].ms / 1000,
        report=document,
        budgets=budgets,
        instance=stack.targets["collector"],
        requests=stack.requests - requests_before,
        failures=1,
        restarts=1,
    )
    histogram(stack.prom, windows["collector"], facts)
    check_variables(stack.prom, windows, spans, budgets)
    evaluate(stack.prom, windows, facts)


def start_guard(
    stack: Stack, processes: list[Any], tmp_path: Path, report: dict[str, Any]
) -> dict[str, tuple[str, float]]:
    """Budgets the report's allocated spend makes ok, warn and breach (one in EUR); the
    guard looping over them, once Prometheus has scraped a run of it. The budgets."""
    spend = {line["name"]: line["cost"] for line in report["allocation"]["domains"]}
    budgets = {
        domain: (currency, spend[domain] * (EUR if currency == "EUR" else 1.0) / ratio)
        for domain, (currency, ratio) in BUDGET_RATIOS.items()
    }
    path = tmp_path / "budgets.yaml"
    document = {
        "currency": {"rates": {"EUR": EUR}},
        "budgets": {
            domain: {"limit": limit, "currency": currency, "namespaces": [domain]}
            for domain, (currency, limit) in budgets.items()
        },
    }
    path.write_text(yaml.safe_dump(document))
    port = int(stack.targets["guard"].rsplit(":", 1)[1])
    guard = Guard(tmp_path, path, stack.database, port)
    processes.append(guard)
    guard.start()
    want = {key(domain=d, currency=c): limit for d, (c, limit) in budgets.items()}
    wait_for(
        lambda: agree(stack.prom.at("max by (domain, currency) (spancost_budget_limit)",
                                    time.time()), want),
        60,
        "Prometheus to scrape a run of the guard",
        interval=0.25,
    )  # fmt: skip
    return budgets


def agree(got: Values, want: Values) -> bool:
    return got.keys() == want.keys() and all(
        math.isclose(got[k], want[k], rel_tol=REL, abs_tol=1e-12) for k in want
    )


def check_warm_up(prom: Prom, windows: dict[str, Window], warmed: Spans, spans: Spans) -> None:
    """T0 holds the warm-up's values and T1 everything's: the premise of exact rates."""
    for when, reference in ((windows["cost"].first, warmed), (windows["cost"].last, spans)):
        expected = Expected(metered(reference))
        got = prom.at("sum by (service_name) (spancost_cost_usd_total)", when)
        assert agree(
            got, {key(service_name=k): v for k, v in expected.cost_by("service_name").items()}
        )
        got = prom.at("sum by (cost_unpriced_reason) (spancost_spans_unpriced_total)", when)
        assert got == {key(cost_unpriced_reason=k): float(v) for k, v in expected.unpriced.items()}
    collector = windows["collector"]
    for expr, before, after in (
        ("sum(otelcol_processor_python_requests_failed)", 1, 2),
        ("sum(otelcol_extension_python_sidecar_restarts)", 1, 2),
    ):
        assert prom.at(expr, collector.first) == {(): before}, expr
        assert prom.at(expr, collector.last) == {(): after}, expr


def histogram(prom: Prom, window: Window, facts: Facts) -> None:
    """The round trip histogram's increase between T0 and T1, read from its samples; its
    count is the requests the test sent the sidecar meanwhile."""
    name = "otelcol_processor_python_round_trip_duration"
    buckets = f"sum by (le) ({name}_bucket)"
    before, after = prom.at(buckets, window.first), prom.at(buckets, window.last)
    facts.buckets = {float(dict(k)["le"]): after[k] - before[k] for k in after}
    sent = "sum(otelcol_processor_python_requests_sent)"
    ((_, sent_before),) = prom.at(sent, window.first).items()
    ((_, sent_after),) = prom.at(sent, window.last).items()
    assert sent_after - sent_before == facts.requests
    assert facts.buckets[math.inf] == facts.requests
    ((_, sum_before),) = prom.at(f"sum({name}_sum)", window.first).items()
    ((_, sum_after),) = prom.at(f"sum({name}_sum)", window.last).items()
    facts.duration_ms = sum_after - sum_before
    assert facts.duration_ms > 2000 * facts.failures, "a timeout counts its 2 s"


def source_of(expr: str) -> str:
    """The scrape target the metrics `expr` reads come from (one per query)."""
    sources = {
        "cost" if name in COST_METRICS else "collector" if name.startswith("otelcol_") else "guard"
        for name in METRIC.findall(expr)
    }
    assert len(sources) == 1, (expr, sources)
    return sources.pop()


def check_variables(
    prom: Prom, windows: dict[str, Window], spans: Spans, budgets: dict[str, Any]
) -> None:
    """Each query variable's values, as Grafana's label_values() asks the series API."""
    priced = [rs for rs, _, span in spans if "cost.usd" in attrs(span.attributes)]
    expected = {
        "environment": {"production"},
        "namespace": {attrs(rs.resource.attributes).get("k8s.namespace.name") for rs in priced}
        - {None},
        "domain": set(budgets),
    }
    exposed = prom.names()
    for name, variable in variables(load_dashboard()).items():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), *(\w+)\)", variable["query"]["query"])
        assert match is not None, variable["query"]
        selector, label = ALL.substitute(match.group(1), 0), match.group(2)
        assert set(METRIC.findall(selector)) <= exposed, selector
        window = windows[source_of(selector)]
        found = prom.get(
            "/api/v1/series",
            **{
                "match[]": selector,
                "start": f"{window.first - 60:.3f}",
                "end": f"{window.last:.3f}",
            },
        )
        assert {s[label] for s in found if label in s} == expected[name], name


def evaluate(prom: Prom, windows: dict[str, Window], facts: Facts) -> None:
    """Every query of every panel, with All, one and no value of each variable, at T1 of
    its target: each result equal to what the traffic implies. And every metric the
    alert rules read is one this real scrape stored, under that very name."""
    exposed = prom.names()
    rules = set(
        METRIC.findall((ROOT / "configs" / "prometheus" / "spancost-rules.yaml").read_text())
    )
    assert rules <= exposed, f"the alert rules read what no scrape stored: {rules - exposed}"
    problems: list[str] = []
    for panel in query_panels(load_dashboard()):
        expectation = PANELS[panel["title"]]
        for target in panel["targets"]:
            expr, name = target["expr"], f"{panel['title']!r} {target['refId']}"
            assert set(METRIC.findall(expr)) <= exposed, (name, set(METRIC.findall(expr)) - exposed)
            window = windows[source_of(expr)]
            wanted: dict[Selection, Values] = {}
            for selection in (ALL, ONE, NOTHING):
                want = wanted[selection] = expectation.targets[target["refId"]](facts, selection)
                got = prom.at(selection.substitute(expr, window.ms), window.last)
                if not agree(got, want):
                    problems.append(f"{name} with {selection}:\n  got  {got}\n  want {want}")
            assert wanted[ALL], f"{name}: the traffic leaves it nothing to show"
            if {a or b for a, b in VARIABLE.findall(expr)} - GRAFANA_BUILTINS:
                assert wanted[NOTHING] == {} and wanted[ONE] != wanted[ALL], name
    assert not problems, "\n".join(problems)
