"""Cost metrics, end to end: the real collector on configs/local.yaml (its
``signal_to_metrics/cost`` connector, ``delta_to_cumulative`` and ``prometheus/cost``
exporter), scraped by a real Prometheus and read back through its query API.

The reference is what the collector wrote on the spans, read from a test OTLP sink on
the same traces pipeline: the metrics must add up to the spans' ``cost.usd`` and count
their ``cost.unpriced_reason``, per service, source, namespace and environment. Spans
sent with a forged ``cost.usd`` show that the connector sees spans only after
``python/spancost`` has removed and recomputed it.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from spancost.demo import DEFAULT_TRANSACTIONS

from tests.e2e.harness import ROOT, Collector, OtlpSink, attrs, free_port
from tests.e2e.prometheus import JOB, PrometheusServer, Sample
from tests.e2e.raw import RawClient
from tests.e2e.test_demo import production_spans, spancost, start_local_collector
from tests.e2e.totals import socket_dir
from tests.waiting import wait_for

Start = Callable[..., Collector]
Spans = list[tuple[trace_pb2.ResourceSpans, trace_pb2.ScopeSpans, trace_pb2.Span]]

COST = "spancost_cost_usd_total"
PRICED = "spancost_spans_priced_total"
UNPRICED = "spancost_spans_unpriced_total"
# What Prometheus shows: the connector's resource attributes and span attributes, the
# scrape's own job and instance, and the exporter's job (service.name) renamed by the
# scrape. Nothing per trace, span, pod or process.
RESOURCE_LABELS = {
    "service_name",
    "deployment_environment_name",
    "cloud_account_id",
    "k8s_namespace_name",
}
SCRAPE_LABELS = {"__name__", "job", "instance", "exported_job"}
PRICE_LABELS = {"cost_source", "cost_model"}
COST_LABELS = sorted(RESOURCE_LABELS | PRICE_LABELS)
FORGED_USD = 1000.0
AGENT_USD = 0.25
AGENTS_TOKEN = "agents-only-0123456789"  # noqa: S105 - a test token
REL = 1e-9

SHIPPED = ("local.yaml", "daemonset.yaml", "gateway.yaml")
PRICING_PLUGINS = {"spancost.chain", "spancost.cost"}


@pytest.fixture
def prometheus(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Starts Prometheus servers for a test and stops them (their log on failure)."""
    started: list[PrometheusServer] = []

    def start(targets: list[str]) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusServer(targets, workdir)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"--- log of {server.config_path} ---\n{server.log()[-20000:]}")


def _value(v: Any) -> common_pb2.AnyValue:
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    return common_pb2.AnyValue(string_value=v)


def odd_traffic() -> trace_service_pb2.ExportTraceServiceRequest:
    """What the demo does not send: the older environment key, an account and namespace
    of their own, ids in span names and a pod UID (which must not become labels), two
    more unpriced reasons, and a forged ``cost.usd`` on every span."""
    now = time.time_ns()
    aws = {"cloud.provider": "aws", "cloud.platform": "aws_eks", "cloud.region": "us-east-1"}
    resources: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
        (
            {
                "service.name": "ledger",
                "deployment.environment": "production",  # the older key, folded
                "cloud.account.id": "210987654321",
                "k8s.namespace.name": "finance",
                "k8s.pod.uid": "6f1c2a9e-0d4b-4e8e-9a51-2f1f3c8d7b10",
                "host.type": "m5.large",
                **aws,
            },
            "GET /ledger/entries/8d1c3f0e-5b7a-4c1e-9f0a-3b2d1c4e5f60",
            {},
        ),
        (
            {"service.name": "nightly-report", "deployment.environment.name": "production"},
            "POST /reports/20261205",
            {},
        ),
        (
            {"service.name": "assistant", "deployment.environment.name": "production"},
            "chat no-such-model",
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "no-such-model-1",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 200,
            },
        ),
        (
            {"service.name": "ledger", "deployment.environment.name": "ci", **aws},
            "GET /ledger/entries/ci",
            {},
        ),
    ]
    req = trace_service_pb2.ExportTraceServiceRequest()
    for n, (resource, name, span_attributes) in enumerate(resources, start=1):
        rs = req.resource_spans.add()
        for key, v in resource.items():
            rs.resource.attributes.add(key=key, value=_value(v))
        ss = rs.scope_spans.add()
        ss.scope.name = "spancost.e2e.cost_metrics"
        span = ss.spans.add(
            trace_id=(now + n).to_bytes(16, "big"),
            span_id=(now + n).to_bytes(8, "big"),
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - 250_000_000,
            end_time_unix_nano=now,
        )
        for key, v in {**span_attributes, "cost.usd": FORGED_USD, "cost.source": "me"}.items():
            span.attributes.add(key=key, value=_value(v))
    return req


class Expected:
    """What the spans at the sink say the metrics must be."""

    def __init__(self, spans: Spans) -> None:
        self.cost: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.priced: Counter[str] = Counter()
        self.unpriced: Counter[str] = Counter()
        for rs, _, span in spans:
            resource = attrs(rs.resource.attributes)
            values = attrs(span.attributes)
            if "cost.usd" not in values:
                self.unpriced[values["cost.unpriced_reason"]] += 1
                continue
            self.priced[resource["service.name"]] += 1
            environment = resource.get(
                "deployment.environment.name", resource.get("deployment.environment")
            )
            for label, key in (
                ("service_name", resource["service.name"]),
                ("cost_source", values["cost.source"]),
                ("cost_model", values["cost.model"]),
                ("k8s_namespace_name", resource.get("k8s.namespace.name", "")),
                ("cloud_account_id", resource.get("cloud.account.id", "")),
                ("deployment_environment_name", environment or ""),
            ):
                self.cost[label][key].append(values["cost.usd"])

    def cost_by(self, label: str) -> dict[str, float]:
        return {key: math.fsum(usd) for key, usd in self.cost[label].items()}

    @property
    def total(self) -> float:
        return math.fsum(self.cost_by("service_name").values())


def close(got: dict[str, float], want: dict[str, float]) -> bool:
    return got.keys() == want.keys() and all(
        math.isclose(got[k], want[k], rel_tol=REL) for k in want
    )


def wait_added_up(
    prom: PrometheusServer, expected: Expected
) -> dict[tuple[str, str], dict[str, float]]:
    """Waits until Prometheus' sums by each label, ``sum by (label) (metric)``, are the
    spans'; on a timeout the first that differs fails the test. Returns them, by
    (metric, label)."""
    want = {(COST, label): expected.cost_by(label) for label in COST_LABELS}
    want[PRICED, "service_name"] = {k: float(v) for k, v in expected.priced.items()}
    want[UNPRICED, "cost_unpriced_reason"] = {k: float(v) for k, v in expected.unpriced.items()}
    last: dict[tuple[str, str], dict[str, float]] = {}

    def agrees() -> bool:
        for metric, label in want:
            last[metric, label] = prom.by(f"sum by ({label}) ({metric})", label)
        return all(close(last[key], value) for key, value in want.items())

    try:
        wait_for(agrees, 30, "Prometheus' cost metrics to add up to the spans", interval=0.25)
    finally:
        for key, value in want.items():  # on a timeout, the first difference is the message
            assert last.get(key) == pytest.approx(value, rel=REL), key
    return want


def test_cost_metrics_in_prometheus_add_up_to_the_priced_spans(
    sink: OtlpSink, collector: Start, prometheus: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    c, env, _ = start_local_collector(collector, sink, tmp_path)
    metrics = c.config["exporters"]["prometheus/cost"]["endpoint"]
    prom = prometheus([metrics])

    # The demo twice, each run in batches of its own (the sink has the first before the
    # second starts): the same series twice, which only a counter adds up.
    for run in (1, 2):
        demo = spancost(env, "demo", "--endpoint", c.grpc_endpoint, "--requests", "4")
        assert demo.returncode == 0, demo.stderr
        sink.wait_spans(run * production_spans(DEFAULT_TRANSACTIONS, 4))
    client = RawClient(c.grpc_endpoint)
    client.export(odd_traffic())
    client.close()
    # The demo's production spans and three of the four odd ones (CI is dropped).
    spans = sink.wait_spans(2 * production_spans(DEFAULT_TRANSACTIONS, 4) + 3)
    expected = Expected(spans)
    assert expected.unpriced == {
        "unknown_instance_type": 2,  # the demo's recommendations, once a run
        "no_resource_info": 1,  # nightly-report: nothing says where it runs
        "unknown_model": 1,  # assistant
    }
    assert FORGED_USD not in {u for by in expected.cost["service_name"].values() for u in by}

    want = wait_added_up(prom, expected)

    (total,) = prom.query(f"sum({COST})")
    assert total.value == pytest.approx(expected.total, rel=REL)
    assert expected.cost_by("deployment_environment_name").keys() == {"production"}
    assert want[COST, "cloud_account_id"].keys() == {"123456789012", "210987654321"}
    assert {"finance", ""} <= want[COST, "k8s_namespace_name"].keys()

    # The labels, exactly: nothing per trace, span, pod or process.
    cost_series = prom.query(COST)
    assert {k for s in cost_series for k in s.labels} == SCRAPE_LABELS | RESOURCE_LABELS | (
        PRICE_LABELS
    )
    assert {k for s in prom.query(PRICED) for k in s.labels} == (
        SCRAPE_LABELS | RESOURCE_LABELS | PRICE_LABELS
    )
    assert {k for s in prom.query(UNPRICED) for k in s.labels} == (
        SCRAPE_LABELS | RESOURCE_LABELS | {"cost_unpriced_reason"}
    )
    ledger = [s for s in cost_series if s.labels["service_name"] == "ledger"]
    assert ledger and all(_ledger_labels(s) for s in ledger)
    assert len(cost_series) == len({frozenset(s.labels.items()) for s in cost_series})
    # Three metrics, nothing else from the cost exporter (no target_info, no scope info).
    names = {s.labels["__name__"] for s in prom.query(f'{{job="{JOB}"}}')}
    assert {n for n in names if not n.startswith("scrape_") and n != "up"} == {
        COST,
        PRICED,
        UNPRICED,
    }


def start_gateway(collector: Start, sink: OtlpSink, tmp_path: Path) -> tuple[Collector, str]:
    """configs/gateway.yaml on free ports and private paths, its backend the test sink,
    its totals in SQLite; the collector and the agents' receiver's endpoint."""
    config = _load("gateway.yaml")
    socket = f"unix://{socket_dir() / 'sidecar.sock'}"
    extensions = config["extensions"]
    extensions["health_check"]["endpoint"] = f"127.0.0.1:{free_port()}"
    extensions["python"]["endpoint"] = config["exporters"]["otlp_grpc/totals"]["endpoint"] = socket
    queue = str(tmp_path / "queue")
    extensions["file_storage"]["directory"] = queue
    extensions["file_storage"]["compaction"]["directory"] = queue
    token = tmp_path / "token"
    token.write_text(AGENTS_TOKEN)
    extensions["bearertokenauth/agents"]["filename"] = str(token)
    config["receivers"]["otlp"]["protocols"] = {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}
    agents = f"127.0.0.1:{free_port()}"
    config["receivers"]["otlp/agents"]["protocols"]["grpc"]["endpoint"] = agents
    config["exporters"]["prometheus/cost"]["endpoint"] = f"127.0.0.1:{free_port()}"
    # As tests/e2e/kube.py: a first call on two busy shared cores is priced, not passed.
    for processor in ("python/spancost", "python/upstream"):
        config["processors"][processor]["timeout"] = "2s"
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    reader["pull"]["exporter"]["prometheus"] = {"host": "127.0.0.1", "port": free_port()}
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SPANCOST_DATA_DIR": str(tmp_path / "data"),
        "OTLP_ENDPOINT": f"127.0.0.1:{sink.port}",
        "OTLP_INSECURE": "true",
    }
    return collector(config, env=env), agents


def agent_priced() -> trace_service_pb2.ExportTraceServiceRequest:
    """What a spancost agent sends a gateway: a span it priced already."""
    now = time.time_ns()
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    resource: dict[str, Any] = {
        "service.name": "storefront",
        "deployment.environment.name": "production",
        "cloud.account.id": "123456789012",
        "k8s.namespace.name": "storefront",
    }
    for key, v in resource.items():
        rs.resource.attributes.add(key=key, value=_value(v))
    span = rs.scope_spans.add().spans.add(
        trace_id=now.to_bytes(16, "big"),
        span_id=now.to_bytes(8, "big"),
        name="GET /",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 100_000_000,
        end_time_unix_nano=now,
    )
    price: dict[str, Any] = {
        "cost.usd": AGENT_USD,
        "cost.currency": "USD",
        "cost.source": "aws_pricelist",
        "cost.model": "ec2.on_demand.pod_share.duration",
    }
    for key, v in price.items():
        span.attributes.add(key=key, value=_value(v))
    return req


def test_the_gateway_counts_both_its_pipelines_once(
    sink: OtlpSink, collector: Start, prometheus: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    """configs/gateway.yaml: applications' spans priced here and agents' spans priced
    upstream reach the connector through one pipeline (forward/cost_metrics)."""
    c, agents = start_gateway(collector, sink, tmp_path)
    prom = prometheus([c.config["exporters"]["prometheus/cost"]["endpoint"]])
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    demo = spancost(env, "demo", "--endpoint", c.grpc_endpoint, "--requests", "4")
    assert demo.returncode == 0, demo.stderr
    with grpc.insecure_channel(agents) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for _ in range(3):
            metadata = [("authorization", f"Bearer {AGENTS_TOKEN}")]
            stub.Export(agent_priced(), metadata=metadata, timeout=10)
    spans = sink.wait_spans(production_spans(DEFAULT_TRANSACTIONS, 4) + 3)
    expected = Expected(spans)
    assert expected.cost["cost_source"]["aws_pricelist"] == [AGENT_USD] * 3, "trusted, kept"
    want = wait_added_up(prom, expected)
    assert want[COST, "cost_source"].keys() == {"bundled", "genai-prices", "aws_pricelist"}


def _ledger_labels(sample: Sample) -> bool:
    """ledger's series: folded environment, its account and namespace, its own job."""
    return (
        sample.labels["deployment_environment_name"] == "production"
        and sample.labels["cloud_account_id"] == "210987654321"
        and sample.labels["k8s_namespace_name"] == "finance"
        and sample.labels["exported_job"] == "ledger"
        and sample.labels["job"] == JOB
    )


def _load(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "configs" / name).read_text())
    return config


def _readme_config() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## A full configuration") :]
    block = section[section.index("```yaml\n") + len("```yaml\n") :]
    config: dict[str, Any] = yaml.safe_load(block[: block.index("```")])
    return config


def _configs() -> dict[str, dict[str, Any]]:
    return {**{name: _load(name) for name in SHIPPED}, "README.md": _readme_config()}


def _pricing(config: dict[str, Any], pipeline: str) -> bool:
    """The pipeline runs a python processor with a plugin that owns cost.usd."""
    for name in config["service"]["pipelines"][pipeline].get("processors", []):
        processor = config["processors"][name]
        if name.split("/")[0] == "python" and processor.get("plugin") in PRICING_PLUGINS:
            return True
    return False


def _sources(config: dict[str, Any], component: str) -> list[str]:
    """The pipelines whose spans reach `component` (an exporter of theirs), through
    forward connectors back to the pipelines that received them."""
    pipelines = config["service"]["pipelines"]
    found: list[str] = []
    for name, pipeline in pipelines.items():
        if component not in pipeline.get("exporters", []):
            continue
        forwards = [r for r in pipeline["receivers"] if r.split("/")[0] == "forward"]
        found.extend(s for f in forwards for s in _sources(config, f))
        if not forwards:
            found.append(name)
    return found


@pytest.mark.parametrize("name", [*SHIPPED, "README.md"])
def test_every_shipped_config_feeds_the_cost_metrics_only_priced_spans(name: str) -> None:
    config = _configs()[name]
    pipelines = config["service"]["pipelines"]
    (metrics,) = [p for p in pipelines.values() if "signal_to_metrics/cost" in p["receivers"]]
    assert metrics["receivers"] == ["signal_to_metrics/cost"]
    assert "prometheus/cost" in metrics["exporters"]
    sources = _sources(config, "signal_to_metrics/cost")
    assert sources, "no traces pipeline feeds the connector"
    assert all(_pricing(config, s) for s in sources), sources
    feeders = [p for p in pipelines.values() if "signal_to_metrics/cost" in p["exporters"]]
    # One pipeline, with a batch processor: one delta at a time (delta_to_cumulative
    # drops a delta older than the last one of its series).
    assert len(feeders) == 1 and any(
        p.split("/")[0] == "batch" for p in feeders[0]["processors"]
    ), feeders


def test_every_shipped_config_defines_the_cost_metrics_alike() -> None:
    """One definition of the metric names and labels, whichever config runs; only the
    exporter's address differs (loopback for make run, 8889 on all interfaces else)."""
    configs = _configs()
    reference = configs["daemonset.yaml"]
    for name, config in configs.items():
        for kind, component in (
            ("connectors", "signal_to_metrics/cost"),
            ("processors", "transform/cost_metrics"),
            ("processors", "delta_to_cumulative"),
        ):
            assert config[kind][component] == reference[kind][component], (name, component)
        exporter = dict(config["exporters"]["prometheus/cost"])
        host, port = exporter.pop("endpoint").rsplit(":", 1)
        everywhere = "0.0.0.0"  # noqa: S104 - what the shipped configs bind
        assert port == "8889" and host == ("127.0.0.1" if name == "local.yaml" else everywhere)
        own = config["service"].get("telemetry", {}).get("metrics", {}).get("readers", [])
        assert all(r["pull"]["exporter"]["prometheus"]["port"] != 8889 for r in own), name
        reference_exporter = dict(reference["exporters"]["prometheus/cost"])
        reference_exporter.pop("endpoint")
        assert exporter == reference_exporter, name


def test_the_harness_fails_without_a_prometheus_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS", str(tmp_path / "no-prometheus"))
    with pytest.raises(AssertionError, match=r"scripts/deps\.sh"):
        PrometheusServer(["127.0.0.1:1"], tmp_path)
    monkeypatch.delenv("PROMETHEUS")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AssertionError, match="prometheus on PATH"):
        PrometheusServer(["127.0.0.1:1"], tmp_path)
