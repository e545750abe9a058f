"""``spancost demo``: what it builds is what configs/local.yaml's chain prices, as meant.

No network: the batches go through the real ``spancost.environment`` and
``spancost.cost`` plugins (the chain of configs/local.yaml) in-process, and the
sending through a fake exporter. tests/e2e/test_demo.py sends them to the real
collector.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost import demo
from spancost.cli import cli
from spancost.demo import (
    CI,
    DEFAULT_TRANSACTIONS,
    PRODUCTION,
    UNPRICED_REASON,
    UNPRICED_SERVICE,
    DemoRequest,
    DemoSendError,
    Endpoint,
    Sent,
    build_batches,
    parse_endpoint,
    plan_requests,
    send,
    summary,
    transaction_names,
)
from spancost.plugin import Events
from spancost.plugins.chain import ChainPlugin
from tests.builders import attribute_map

LOCAL_YAML = Path(__file__).parents[2] / "configs" / "local.yaml"
NOW = 1_760_000_000_000_000_000
HOUR = 3600 * 10**9
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200


@dataclass(frozen=True)
class SentSpan:
    """A span as the demo sent it (or as the chain left it): its service and environment."""

    service: str
    environment: str
    span: Span

    @property
    def attributes(self) -> dict[str, object]:
        return attribute_map(self.span.attributes)


def spans_of(batches: Iterable[ExportTraceServiceRequest]) -> list[SentSpan]:
    found = []
    for batch in batches:
        for resource_spans in batch.resource_spans:
            resource = attribute_map(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        SentSpan(
                            str(resource["service.name"]),
                            str(resource["deployment.environment.name"]),
                            span,
                        )
                    )
    return found


@pytest.fixture(scope="module")
def chain() -> Iterator[ChainPlugin]:
    """The processor configs/local.yaml (`make run`) runs: environment, then cost."""
    config = yaml.safe_load(LOCAL_YAML.read_text())
    plugin = ChainPlugin(config["processors"]["python/spancost"]["config"])
    yield plugin
    plugin.close()


def processed(
    chain: ChainPlugin, requests: Sequence[DemoRequest], seed: int = 1, now: int = NOW
) -> tuple[list[SentSpan], list[SentSpan], Events]:
    """(spans sent, spans the chain let through with their prices, its events)."""
    batches = list(build_batches(requests, seed=seed, now_ns=now))
    sent = spans_of(batches)
    events = Events()
    for batch in batches:
        chain.process(batch, events)
    return sent, spans_of(batches), events


# -- what spancost.cost makes of it -------------------------------------------------


@pytest.mark.parametrize(
    ("transactions", "requests"),
    [(DEFAULT_TRANSACTIONS, 20), (("checkout", "search", "refund"), 3), (("refund",), 1)],
)
def test_every_production_span_is_priced_but_the_one_meant_not_to_be(
    chain: ChainPlugin, transactions: tuple[str, ...], requests: int
) -> None:
    plan = plan_requests(transactions, requests)
    sent, kept, events = processed(chain, plan)

    production = [s for s in sent if s.environment == PRODUCTION]
    assert [s.span.span_id for s in kept] == [s.span.span_id for s in production]
    unpriced = [s for s in kept if "cost.usd" not in s.attributes]
    assert [(s.service, s.attributes["cost.unpriced_reason"]) for s in unpriced] == [
        (UNPRICED_SERVICE, UNPRICED_REASON)
    ]
    assert events.count("unpriced") == 1
    total = math.fsum(float(s.attributes.get("cost.usd", 0.0)) for s in kept)  # type: ignore[arg-type]
    assert total > 0

    # Each service segment is charged once, on its local root; the rest of it is
    # included; the LLM call is priced by its tokens and the Lambda by GB-seconds.
    models = Counter((s.service, s.attributes.get("cost.model")) for s in kept)
    count = Counter({name: requests for name in transactions})
    expected = {
        "storefront": requests * len(transactions),
        "payments": count["checkout"],
        "send-receipt": count["checkout"],
        "search-api": count["search"],
        "catalog": sum(n for name, n in count.items() if name not in ("checkout", "search")),
    }
    charged = {service: models[(service, "ec2.on_demand.duration")] for service in expected}
    charged["send-receipt"] = models[("send-receipt", "lambda.gb_seconds+requests")]
    assert charged == expected
    assert models[("search-api", "llm.tokens")] == count["search"]
    assert {model for (_, model) in models} <= {
        "ec2.on_demand.duration",
        "ec2.included_in_segment",
        "lambda.gb_seconds+requests",
        "llm.tokens",
        None,  # the unpriced span
    }


def test_ci_requests_are_what_local_yaml_drops(chain: ChainPlugin) -> None:
    plan = plan_requests(DEFAULT_TRANSACTIONS, 20)
    sent, kept, events = processed(chain, plan)
    ci = [s for s in sent if s.environment == CI]
    assert sum(1 for r in plan if r.environment == CI) == 10
    assert len(ci) > 0 and events.count("dropped") == len(ci)
    assert {s.environment for s in kept} == {PRODUCTION}
    assert {s.service for s in ci} == {"storefront", "payments", "send-receipt", "search-api"}


def test_an_llm_call_costs_what_genai_prices_says(chain: ChainPlugin) -> None:
    from genai_prices import Usage, calc_price  # noqa: PLC0415 - only this test needs it

    _, kept, _ = processed(chain, plan_requests(("search",), 3))
    calls = [s.attributes for s in kept if s.attributes.get("cost.model") == "llm.tokens"]
    assert len(calls) == 3
    for call in calls:
        usage = Usage(
            input_tokens=int(call["gen_ai.usage.input_tokens"]),  # type: ignore[call-overload]
            output_tokens=int(call["gen_ai.usage.output_tokens"]),  # type: ignore[call-overload]
        )
        price = calc_price(usage, str(call["gen_ai.response.model"]), provider_id="openai")
        assert call["cost.usd"] == pytest.approx(float(price.total_price), rel=1e-9)


def test_the_command_line_loads_no_pricing_engine_for_it() -> None:
    """Why spancost.demo takes its LLM attribute names from the vocabulary, not the pricer."""
    probe = "import json, sys, spancost.cli; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "genai_prices" not in json.loads(result.stdout)


# -- the traces ---------------------------------------------------------------------


def test_each_request_is_one_well_formed_trace() -> None:
    plan = plan_requests(("checkout", "search", "refund"), 4)
    sent = spans_of(build_batches(plan, seed=3, now_ns=NOW))
    traces: dict[bytes, list[SentSpan]] = {}
    for item in sent:
        traces.setdefault(item.span.trace_id, []).append(item)
    assert len(traces) == len(plan)

    named: Counter[tuple[str, str]] = Counter()
    for trace in traces.values():
        by_id = {s.span.span_id: s for s in trace}
        assert len(by_id) == len(trace)
        (root,) = [s for s in trace if not s.span.parent_span_id]
        assert (root.service, root.span.kind) == ("storefront", Span.SPAN_KIND_SERVER)
        transaction = str(root.attributes["business.transaction"])
        named[(transaction, root.environment)] += 1
        assert {s.environment for s in trace} == {root.environment}
        for item in trace:
            span = item.span
            assert NOW - HOUR < span.start_time_unix_nano < span.end_time_unix_nano < NOW
            if span is root.span:
                continue
            parent = by_id[span.parent_span_id]
            # As an SDK sends them: the flags say whether the parent is in this process.
            assert span.flags & HAS_IS_REMOTE
            assert bool(span.flags & IS_REMOTE) == (item.service != parent.service)
            if item.service == parent.service:  # in-process children end inside their parent
                assert span.start_time_unix_nano >= parent.span.start_time_unix_nano
                assert span.end_time_unix_nano <= parent.span.end_time_unix_nano
    assert named == Counter(
        {(name, PRODUCTION): 4 for name in ("checkout", "search", "refund")}
        | {("checkout", CI): 1, ("search", CI): 1, ("refund", CI): 1}
    )


def test_one_seed_always_costs_the_same_and_each_run_has_new_ids(chain: ChainPlugin) -> None:
    plan = plan_requests(DEFAULT_TRANSACTIONS, 5)

    def costs(seed: int, now: int) -> tuple[list[float], set[bytes]]:
        _, kept, _ = processed(chain, plan, seed=seed, now=now)
        usd = [float(s.attributes.get("cost.usd", -1.0)) for s in kept]  # type: ignore[arg-type]
        return usd, {s.span.trace_id for s in kept}

    first, first_ids = costs(1, NOW)
    again, again_ids = costs(1, NOW + 10**9)
    other, _ = costs(2, NOW)
    assert first == again
    assert not first_ids & again_ids
    assert first != other
    assert list(build_batches(plan, seed=1, now_ns=NOW)) == list(
        build_batches(plan, seed=1, now_ns=NOW)
    )


def test_batches_hold_whole_traces_and_one_resource_per_service_and_environment() -> None:
    plan = plan_requests(DEFAULT_TRANSACTIONS, 30)  # 60 production, 15 CI
    batches = list(build_batches(plan, seed=1, now_ns=NOW, traces_per_batch=50))
    assert len(batches) == 2
    seen: set[bytes] = set()
    for batch in batches:
        traces = {s.span.trace_id for s in spans_of([batch])}
        assert len(traces) <= 50 and not traces & seen
        seen |= traces
        keys = [
            (
                attribute_map(rs.resource.attributes)["service.name"],
                attribute_map(rs.resource.attributes)["deployment.environment.name"],
            )
            for rs in batch.resource_spans
        ]
        assert len(keys) == len(set(keys))
    assert len(seen) == len(plan) == 75


def test_the_plan_takes_turns_and_mixes_in_ci() -> None:
    plan = plan_requests(("a", "b"), 4)
    assert [(r.transaction, r.environment) for r in plan] == [
        ("a", PRODUCTION),
        ("b", PRODUCTION),
        ("a", PRODUCTION),
        ("b", PRODUCTION),
        ("a", CI),
        ("a", PRODUCTION),
        ("b", PRODUCTION),
        ("a", PRODUCTION),
        ("b", PRODUCTION),
        ("b", CI),
    ]
    assert [r.unpriceable_call for r in plan] == [True] + [False] * 9
    assert plan_requests(("a",), 1) == (
        DemoRequest("a", unpriceable_call=True),
        DemoRequest("a", CI),
    )
    with pytest.raises(ValueError, match="needs"):
        plan_requests((), 3)


def test_transaction_names() -> None:
    assert transaction_names([]) == DEFAULT_TRANSACTIONS
    assert transaction_names([" refund", "search", "refund "]) == ("refund", "search")
    with pytest.raises(ValueError, match="must not be blank"):
        transaction_names(["checkout", "  "])


# -- where it sends -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "protocol", "target", "loopback", "secure"),
    [
        (None, "grpc", "127.0.0.1:4317", True, False),
        (None, "http/protobuf", "http://127.0.0.1:4318/v1/traces", True, False),
        ("localhost:14317", "grpc", "localhost:14317", True, False),
        ("http://127.0.0.2:4317/", "grpc", "127.0.0.2:4317", True, False),
        ("[::1]:4317", "grpc", "[::1]:4317", True, False),
        ("collector.example:4317", "grpc", "collector.example:4317", False, False),
        ("https://collector.example", "grpc", "collector.example:4317", False, True),
        ("127.0.0.1:4318", "http/protobuf", "http://127.0.0.1:4318/v1/traces", True, False),
        ("https://10.0.0.1:4318/otlp/v1/traces", "http/protobuf",
         "https://10.0.0.1:4318/otlp/v1/traces", False, True),
    ],
)  # fmt: skip
def test_endpoints(
    text: str | None, protocol: Any, target: str, loopback: bool, secure: bool
) -> None:
    endpoint = parse_endpoint(text, protocol)
    assert (str(endpoint), endpoint.loopback, endpoint.secure) == (target, loopback, secure)


@pytest.mark.parametrize(
    ("text", "protocol", "message"),
    [
        ("127.0.0.1:99999", "grpc", "port"),
        ("ftp://127.0.0.1:4317", "grpc", "scheme"),
        ("http://:4317", "grpc", "no host"),
        ("127.0.0.1:4317/v1/traces", "grpc", "no path"),
    ],
)
def test_bad_endpoints(text: str, protocol: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(text, protocol)


class FakeExporter:
    def __init__(self, answers: list[ExportTraceServiceResponse | DemoSendError]) -> None:
        self.answers = answers
        self.batches: list[ExportTraceServiceRequest] = []

    def export(self, batch: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
        self.batches.append(batch)
        answer = self.answers.pop(0)
        if isinstance(answer, DemoSendError):
            raise answer
        return answer

    def close(self) -> None:
        pass


def test_send_counts_spans_and_what_the_collector_rejected() -> None:
    batches = list(build_batches(plan_requests(DEFAULT_TRANSACTIONS, 30), seed=1, now_ns=NOW))
    partial = ExportTraceServiceResponse()
    partial.partial_success.rejected_spans = 3
    partial.partial_success.error_message = "memory limit"
    exporter = FakeExporter([ExportTraceServiceResponse(), partial])
    sent = send(batches, exporter)
    assert exporter.batches == batches
    assert sent == Sent(2, len(spans_of(batches)), 3, "memory limit")


def test_send_stops_at_the_first_failure_saying_what_was_sent() -> None:
    batches = build_batches(plan_requests(DEFAULT_TRANSACTIONS, 60), seed=1, now_ns=NOW)
    failure = DemoSendError("cannot reach the collector at 127.0.0.1:4317")
    exporter = FakeExporter([ExportTraceServiceResponse(), failure, ExportTraceServiceResponse()])
    with pytest.raises(DemoSendError, match=r"127.0.0.1:4317 \(after 1 batches, \d+ spans"):
        send(batches, exporter)
    assert len(exporter.batches) == 2

    exporter = FakeExporter([failure])
    with pytest.raises(DemoSendError) as raised:
        send(build_batches(plan_requests(("a",), 1), seed=1, now_ns=NOW), exporter)
    assert raised.value is failure


def test_the_summary_says_what_was_sent_and_what_to_run_next() -> None:
    plan = plan_requests(("checkout", "search", "refund"), 4)
    endpoint = Endpoint("grpc", "127.0.0.1:4317", "127.0.0.1", secure=False)
    text = summary(plan, endpoint, Sent(1, 123))
    lines = text.splitlines()
    assert lines[0] == "sent 15 requests, 123 spans in 1 batch, to 127.0.0.1:4317 over OTLP/gRPC:"
    assert lines[1].split()[:2] == ["checkout", "4"] and "send-receipt (Lambda" in lines[1]
    assert lines[2].split()[:2] == ["search", "4"] and "gpt-4o (LLM" in lines[2]
    assert lines[3].split()[:2] == ["refund", "4"] and "catalog" in lines[3]
    assert lines[4].split()[:2] == ["CI", "3"] and "configs/local.yaml drops them" in lines[4]
    assert f"{UNPRICED_SERVICE} sends no host.type ({UNPRICED_REASON})" in lines[5]
    assert lines[-1].startswith("next: spancost report")
    assert "warning" not in text
    warned = summary(plan, endpoint, Sent(1, 123, 3, "memory limit"))
    assert "warning: the collector rejected 3 spans: memory limit" in warned


# -- the command's usage errors (exit 2, nothing sent) --------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "collector.example:4317"], "--allow-remote"),
        (["--endpoint", "127.0.0.1:4317/x"], "no path"),
        (["--business-transaction", " "], "must not be blank"),
        (["--requests", "0"], "--requests"),
        (["--protocol", "http/json"], "--protocol"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_readmes_show_what_the_default_run_sends_and_costs(chain: ChainPlugin) -> None:
    plan = plan_requests(DEFAULT_TRANSACTIONS, demo.DEFAULT_REQUESTS)
    _, kept, _ = processed(chain, plan, seed=demo.DEFAULT_SEED)
    batches = list(build_batches(plan, seed=demo.DEFAULT_SEED, now_ns=NOW))
    endpoint = parse_endpoint(None, "grpc")
    printed = summary(plan, endpoint, Sent(len(batches), len(spans_of(batches))))
    total = math.fsum(float(s.attributes.get("cost.usd", 0.0)) for s in kept)  # type: ignore[arg-type]
    for readme in (LOCAL_YAML.parents[1] / "README.md", Path(__file__).parents[1] / "README.md"):
        text = readme.read_text()
        assert printed in text, f"{readme}: the output of `spancost demo` is not as shown"
    root_readme = (LOCAL_YAML.parents[1] / "README.md").read_text()
    traces = sum(1 for request in plan if request.environment == PRODUCTION)
    assert f"total {total:.4f} over {traces} traces" in root_readme
