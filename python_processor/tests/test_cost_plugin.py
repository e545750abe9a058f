"""``spancost.cost`` end to end on OTLP batches: what each span is charged, and why."""

from __future__ import annotations

import math
import socket
from collections.abc import Mapping
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.changes import Changes, span_count
from spancost.errors import ConfigError
from spancost.plugin import Event, Events
from spancost.plugins.cost import CostPlugin
from spancost.registry import load_plugin
from spancost.vocabulary.keys import COST_KEYS as OWNED_KEYS
from tests.builders import Value, all_spans, attribute_map, attributes

SERVER = Span.SPAN_KIND_SERVER
INTERNAL = Span.SPAN_KIND_INTERNAL
CLIENT = Span.SPAN_KIND_CLIENT
CONSUMER = Span.SPAN_KIND_CONSUMER
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200
T0 = 1_760_000_000_000_000_000
SECOND = 1_000_000_000

EKS: dict[str, Value] = {
    "service.name": "checkout",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "host.type": "m5.large",
    "os.type": "linux",
}
LAMBDA: dict[str, Value] = {
    "service.name": "resize",
    "cloud.provider": "aws",
    "cloud.platform": "aws_lambda",
    "cloud.region": "us-east-1",
    "faas.max_memory": 1536 * 1024 * 1024,
}
PARENT = b"\x01" * 8


def make_span(
    name: str = "op",
    *,
    kind: Any = SERVER,
    parent: bytes = b"",
    flags: int = 0,
    start: int = T0,
    duration: int = SECOND,
    attrs: Mapping[str, Value] | None = None,
) -> Span:
    return Span(
        trace_id=b"\x02" * 16,
        span_id=(hash(name) & 0xFFFFFFFF).to_bytes(8, "big"),
        parent_span_id=parent,
        name=name,
        kind=kind,
        flags=flags,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=attributes(attrs),
    )


def child(name: str = "child", **kwargs: Any) -> Span:
    kwargs.setdefault("kind", INTERNAL)
    kwargs.setdefault("parent", PARENT)
    return make_span(name, **kwargs)


def resource(attrs: Mapping[str, Value] | None, *spans: Span) -> ResourceSpans:
    rs = ResourceSpans()
    rs.resource.attributes.extend(attributes(attrs))
    scope = ScopeSpans()
    scope.spans.extend(spans)
    rs.scope_spans.append(scope)
    return rs


def run(
    config: Mapping[str, Any], *resources: ResourceSpans
) -> tuple[list[dict[str, object]], Events]:
    """Process a batch as the collector would (annotate, then apply the changes)."""
    batch = ExportTraceServiceRequest(resource_spans=list(resources))
    events = Events()
    plugin = CostPlugin(config)
    try:
        plugin.process(batch, events)
    finally:
        plugin.close()
    return [attribute_map(span.attributes) for span in all_spans(batch)], events


def cost(span: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in span.items() if k.startswith("cost.")}


def usd(span: Mapping[str, object]) -> float:
    value = span["cost.usd"]
    assert isinstance(value, float)
    return value


# -- known public prices ---------------------------------------------------------------


def test_m5_large_server_span_for_1_5_seconds() -> None:
    (span,), events = run({}, resource(EKS, make_span(duration=1_500_000_000)))
    assert usd(span) == pytest.approx(0.096 * 1.5 / 3600, rel=1e-12)
    assert cost(span) == {
        "cost.usd": span["cost.usd"],
        "cost.currency": "USD",
        "cost.source": "bundled",
        "cost.model": "ec2.on_demand.duration",
        "cost.price_as_of": "2025-01-01",
        "cost.instance_type": "m5.large",
    }
    assert list(events) == [Event("priced", "bundled", 1)]


def test_t3_xlarge_for_an_hour() -> None:
    (span,), _ = run(
        {}, resource({**EKS, "host.type": "t3.xlarge"}, make_span(duration=3600 * SECOND))
    )
    assert usd(span) == pytest.approx(0.1664, rel=1e-12)


def test_lambda_gb_seconds_and_request() -> None:
    """1536 MB for 120.4 ms: billed 121 ms, plus one request."""
    invocation = make_span("invoke", duration=120_400_000, attrs={"faas.trigger": "http"})
    (span,), _ = run({}, resource(LAMBDA, invocation))
    expected = 1536 / 1024 * 0.121 * 0.0000166667 + 0.20 / 1_000_000
    assert usd(span) == pytest.approx(expected, rel=1e-12)
    assert span["cost.model"] == "lambda.gb_seconds+requests"
    assert span["cost.instance_type"] == "lambda/x86_64/1536MB"


def test_lambda_memory_in_mb_and_arm() -> None:
    legacy = {**LAMBDA, "faas.max_memory": 1536, "host.arch": "arm64"}
    (span,), _ = run({}, resource(legacy, make_span(duration=10 * 1_000_000)))
    assert usd(span) == pytest.approx(1.5 * 0.010 * 0.0000133334 + 0.2e-6, rel=1e-12)


def test_lambda_children_and_trigger() -> None:
    spans, _ = run(
        {},
        resource(
            LAMBDA,
            child("db", duration=50_000_000),
            # Not a local root by kind or flags, but it carries faas.trigger: the invocation.
            make_span(
                "handler",
                kind=INTERNAL,
                parent=PARENT,
                flags=HAS_IS_REMOTE,
                duration=100_000_000,
                attrs={"faas.trigger": "pubsub"},
            ),
        ),
    )
    db, handler = spans
    assert cost(db)["cost.usd"] == 0.0
    assert db["cost.model"] == "lambda.included_in_segment"
    assert usd(handler) == pytest.approx(1.5 * 0.1 * 0.0000166667 + 0.2e-6, rel=1e-12)


def test_fargate_task() -> None:
    ecs: dict[str, Value] = {
        "cloud.provider": "aws",
        "cloud.platform": "aws_ecs",
        "cloud.region": "us-east-1",
        "aws.ecs.launchtype": "fargate",
        "aws.ecs.task.cpu": 512,
        "aws.ecs.task.memory": 1024,
    }
    (span,), _ = run({}, resource(ecs, make_span(duration=60 * SECOND)))
    assert usd(span) == pytest.approx((0.5 * 0.04048 + 1.0 * 0.004445) / 60, rel=1e-12)
    assert span["cost.model"] == "fargate.vcpu_memory.duration"
    configured = {
        "cloud.provider": "aws",
        "cloud.platform": "aws_ecs",
        "cloud.region": "us-east-1",
        "aws.ecs.launchtype": "FARGATE",
        "service.name": "api",
    }
    config = {"fargate": {"services": {"api": {"vcpu": 2, "memory_gb": 4, "arch": "arm64"}}}}
    (span,), _ = run(config, resource(configured, make_span(duration=3600 * SECOND)))
    assert usd(span) == pytest.approx(2 * 0.03238 + 4 * 0.00356, rel=1e-12)


# -- no double counting ------------------------------------------------------------------


def test_only_the_local_root_is_charged() -> None:
    spans, events = run(
        {},
        resource(
            EKS,
            child("a", duration=SECOND // 2),
            child("b", kind=CLIENT, duration=SECOND // 4),
            make_span("root", duration=SECOND),
        ),
    )
    a, b, root = spans
    for nested in (a, b):
        assert cost(nested) == {
            "cost.usd": 0.0,
            "cost.currency": "USD",
            "cost.source": "bundled",
            "cost.model": "ec2.included_in_segment",
            "cost.price_as_of": "2025-01-01",
            "cost.instance_type": "m5.large",
        }
    assert usd(root) == pytest.approx(0.096 / 3600, rel=1e-12)
    assert events.count("unpriced") == 0
    assert events.count("priced", "bundled") == 3


@pytest.mark.parametrize(
    ("kind", "parent", "flags", "charged"),
    [
        (INTERNAL, b"", 0, True),  # no parent
        (INTERNAL, PARENT, HAS_IS_REMOTE | IS_REMOTE, True),  # remote parent per the flags
        (CLIENT, PARENT, HAS_IS_REMOTE | IS_REMOTE | 0x01, True),
        (SERVER, PARENT, HAS_IS_REMOTE, False),  # the flags say local, whatever the kind
        (CONSUMER, PARENT, 0, True),  # no flags: CONSUMER starts a segment
        (SERVER, PARENT, 0, True),
        (INTERNAL, PARENT, 0, False),  # no flags, INTERNAL with a parent
        (CLIENT, PARENT, 0, False),
    ],
)
def test_local_root_detection(kind: Any, parent: bytes, flags: int, charged: bool) -> None:
    (span,), events = run({}, resource(EKS, make_span(kind=kind, parent=parent, flags=flags)))
    if charged:
        assert usd(span) == pytest.approx(0.096 / 3600, rel=1e-12)
        assert span["cost.model"] == "ec2.on_demand.duration"
    else:
        assert usd(span) == 0.0
        assert span["cost.model"] == "ec2.included_in_segment"
    assert events.count("priced") == 1


# -- spoofing and upstream prices ------------------------------------------------------


SPOOF: dict[str, Value] = {
    "cost.usd": 123.0,
    "cost.source": "me",
    "cost.model": "free",
    "cost.unpriced_reason": "no_resource_info",
    "cost.instance_type": "x1e.32xlarge",
    "cost.billable": True,  # not ours: kept
}


def test_client_sent_cost_attributes_are_replaced() -> None:
    spans, _ = run(
        {},
        resource(EKS, make_span("root", attrs=SPOOF), child("child", attrs={"cost.usd": 5.0})),
        resource({}, make_span("nowhere", attrs=SPOOF)),
    )
    root, nested, nowhere = spans
    assert usd(root) == pytest.approx(0.096 / 3600)
    assert root["cost.model"] == "ec2.on_demand.duration"
    assert root["cost.instance_type"] == "m5.large"
    assert "cost.unpriced_reason" not in root
    assert root["cost.billable"] is True
    assert usd(nested) == 0.0
    assert cost(nowhere) == {"cost.unpriced_reason": "no_resource_info", "cost.billable": True}


def test_client_cost_attributes_on_llm_spans_are_removed() -> None:
    llm = child(
        "chat",
        kind=CLIENT,
        attrs={
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10,
            "cost.instance_type": "m5.large",
            "cost.unpriced_reason": "unknown_model",
        },
    )
    (span,), _ = run({}, resource(EKS, llm))
    assert span["cost.source"] == "genai-prices"
    assert "cost.instance_type" not in span and "cost.unpriced_reason" not in span


def test_trust_upstream_keeps_priced_spans() -> None:
    upstream: dict[str, Value] = {
        "cost.usd": 0.5,
        "cost.source": "bundled",
        "cost.model": "ec2.on_demand.duration",
        "cost.currency": "USD",
        "cost.price_as_of": "2024-01-01",
    }
    batch = (
        resource(EKS, make_span("a", attrs=upstream), make_span("b"), child("c", attrs=upstream)),
    )
    spans, events = run({"trust_upstream": True}, *batch)
    a, b, c = spans
    assert cost(a) == upstream and cost(c) == upstream
    assert usd(b) == pytest.approx(0.096 / 3600)
    assert events.count("trusted", "upstream") == 2
    # Off (the default): recomputed.
    spans, _ = run({}, *batch)
    assert (
        usd(spans[0]) == pytest.approx(0.096 / 3600)
        and spans[0]["cost.price_as_of"] == "2025-01-01"
    )
    # A cost.usd that is not a finite double is not an upstream price.
    (d,), _ = run({"trust_upstream": True}, resource(EKS, make_span(attrs={"cost.usd": "0.5"})))
    assert usd(d) == pytest.approx(0.096 / 3600)


# -- user rules -------------------------------------------------------------------------


ONPREM = {
    "service.name": "ledger",
    "host.name": "rack3-node-07",
    "deployment.environment.name": "prod",
}


def test_rule_per_hour_on_prem() -> None:
    config = {
        "rules": [{"name": "onprem", "match": {"host.name": "rack*-node-*"}, "per_hour_usd": 0.36}]
    }
    spans, events = run(config, resource(ONPREM, child(), make_span("root", duration=10 * SECOND)))
    nested, root = spans
    assert usd(root) == pytest.approx(0.36 * 10 / 3600, rel=1e-12)
    assert (root["cost.source"], root["cost.model"], root["cost.price_as_of"]) == (
        "rule:onprem",
        "rule.duration",
        "config",
    )
    assert "cost.instance_type" not in root
    assert (usd(nested), nested["cost.model"]) == (0.0, "rule.included_in_segment")
    assert events.count("priced", "rule:onprem") == 2


def test_rule_per_unit_with_and_without_attribute() -> None:
    config = {
        "rules": [
            {
                "name": "s3",
                "match": {"rpc.service": "S3"},
                "per_unit_usd": 0.09 / 2**30,
                "unit_attribute": "http.response.body.size",
            },
            {
                "name": "stripe",
                "match": {"server.address": ["api.stripe.com"]},
                "per_unit_usd": 0.3,
            },
        ]
    }
    spans, events = run(
        config,
        resource(
            EKS,
            child(
                "get", kind=CLIENT, attrs={"rpc.service": "S3", "http.response.body.size": 2**30}
            ),
            child("charge", kind=CLIENT, attrs={"server.address": "api.stripe.com"}),
            child("nosize", kind=CLIENT, attrs={"rpc.service": "S3"}),
            child(
                "strsize", kind=CLIENT, attrs={"rpc.service": "S3", "http.response.body.size": "9"}
            ),
            make_span("root"),
        ),
    )
    get, charge, nosize, strsize, root = spans
    assert usd(get) == pytest.approx(0.09, rel=1e-12)
    assert (get["cost.model"], get["cost.source"]) == ("rule.usage", "rule:s3")
    assert usd(charge) == pytest.approx(0.3)
    assert nosize["cost.unpriced_reason"] == "bad_attribute" and "cost.usd" not in nosize
    assert strsize["cost.unpriced_reason"] == "bad_attribute"
    # The segment's compute is still charged on its root.
    assert usd(root) == pytest.approx(0.096 / 3600)
    assert events.count("unpriced", "bad_attribute") == 2


def test_rules_first_match_wins_and_come_before_built_ins() -> None:
    config = {
        "rules": [
            {
                "name": "primary",
                "match": {"service.name": "checkout", "host.type": "m5.*"},
                "per_hour_usd": 3.6,
            },
            {"name": "all-eks", "match": {"cloud.platform": "aws_eks"}, "per_hour_usd": 7.2},
        ]
    }
    spans, _ = run(
        config,
        resource(EKS, make_span("a")),
        resource({**EKS, "service.name": "cart"}, make_span("b")),
        resource({**EKS, "service.name": "cart", "cloud.platform": "aws_ec2"}, make_span("c")),
    )
    a, b, c = spans
    assert a["cost.source"] == "rule:primary" and usd(a) == pytest.approx(0.001)
    assert b["cost.source"] == "rule:all-eks" and usd(b) == pytest.approx(0.002)
    assert c["cost.source"] == "bundled" and usd(c) == pytest.approx(0.096 / 3600)


def test_span_attributes_override_resource_attributes_in_rules() -> None:
    config = {
        "rules": [{"name": "batch", "match": {"service.name": "batch-*"}, "per_hour_usd": 36}]
    }
    spans, _ = run(
        config,
        resource(
            EKS, make_span("own", attrs={"service.name": "batch-nightly"}), make_span("plain")
        ),
        resource(
            {**EKS, "service.name": "batch-x"}, make_span("renamed", attrs={"service.name": "web"})
        ),
    )
    own, plain, renamed = spans
    assert own["cost.source"] == "rule:batch" and usd(own) == pytest.approx(0.01)
    assert plain["cost.source"] == "bundled"
    assert renamed["cost.source"] == "bundled"


def test_rule_applies_to_all_spans() -> None:
    config = {
        "rules": [
            {
                "name": "rds",
                "match": {"db.system.name": "postgresql"},
                "per_hour_usd": 0.36,
                "applies_to": "all",
            }
        ]
    }
    spans, _ = run(
        config,
        resource(
            EKS,
            child(
                "query", kind=CLIENT, duration=2 * SECOND, attrs={"db.system.name": "postgresql"}
            ),
            make_span("root", duration=3 * SECOND),
        ),
    )
    query, root = spans
    assert query["cost.source"] == "rule:rds" and usd(query) == pytest.approx(0.0002)
    assert usd(root) == pytest.approx(0.096 * 3 / 3600)


def test_rule_config_errors_surface_from_the_plugin() -> None:
    with pytest.raises(ConfigError) as caught:
        CostPlugin(
            {
                "rules": [
                    {"name": "a", "match": {"k": "v"}, "per_hour_usd": 1},
                    {"name": "b", "match": {"k": "v"}, "per_hour_usd": 1},
                    {"name": "c", "match": {"service.name": 3.5}, "per_hour_usd": 1},
                ]
            }
        )
    assert caught.value.key == "rules[2].match.service.name"
    assert str(caught.value).startswith("config.rules[2].match.service.name: ")


# -- spot, minimum charge, LLM ----------------------------------------------------------


def test_spot_discount() -> None:
    spot = {**EKS, "aws.ec2.instance.lifecycle": "spot"}
    (span,), _ = run({"spot": {"discount": 0.7}}, resource(spot, make_span(duration=3600 * SECOND)))
    assert usd(span) == pytest.approx(0.096 * 0.3, rel=1e-12)
    assert span["cost.model"] == "ec2.spot.duration"
    # Default discount 0.7; another attribute and value, as from a Karpenter node label.
    karpenter = {**EKS, "k8s.node.label.karpenter.sh/capacity-type": "SPOT"}
    config = {
        "spot": {
            "attribute": "k8s.node.label.karpenter.sh/capacity-type",
            "values": ["spot"],
            "discount": 0.6,
        }
    }
    (span,), _ = run(config, resource(karpenter, make_span(duration=3600 * SECOND)))
    assert usd(span) == pytest.approx(0.096 * 0.4, rel=1e-12)
    (span,), _ = run({}, resource(karpenter, make_span(duration=3600 * SECOND)))
    assert span["cost.model"] == "ec2.on_demand.duration"
    (span,), _ = run({}, resource({**EKS, "aws.ec2.instance.lifecycle": "on-demand"}, make_span()))
    assert span["cost.model"] == "ec2.on_demand.duration"


def test_minimum_charge() -> None:
    config = {"minimum_charge_usd": 1e-6}
    spans, _ = run(
        config,
        resource(
            EKS, child(), make_span("tiny", duration=1), make_span("big", duration=3600 * SECOND)
        ),
    )
    nested, tiny, big = spans
    assert usd(nested) == 0.0  # included spans carry no charge of their own
    assert usd(tiny) == 1e-6
    assert usd(big) == pytest.approx(0.096)
    # Without a minimum a tiny charge is written as is, never rounded to zero.
    (tiny,), _ = run({}, resource(EKS, make_span(duration=1)))
    assert 0.0 < usd(tiny) < 1e-13


def test_llm_call_priced_with_genai_prices() -> None:
    chat = child(
        "chat gpt-4o",
        kind=CLIENT,
        attrs={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 200,
        },
    )
    spans, events = run({}, resource(EKS, chat, make_span("root")))
    llm, root = spans
    expected = calc_price(
        Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200),
        "gpt-4o-2024-08-06",
        provider_id="openai",
    ).total_price
    assert usd(llm) == pytest.approx(float(expected), rel=1e-12)
    assert cost(llm) == {
        "cost.usd": llm["cost.usd"],
        "cost.currency": "USD",
        "cost.source": "genai-prices",
        "cost.model": "llm.tokens",
        "cost.price_as_of": "genai-prices 0.2.3",
    }
    # The segment's compute is charged on its root as usual.
    assert usd(root) == pytest.approx(0.096 / 3600)
    assert events.count("priced", "genai-prices") == 1


def test_llm_unknown_model_and_llm_off() -> None:
    call = child(
        "chat",
        kind=CLIENT,
        attrs={"gen_ai.request.model": "our-llama-finetune", "gen_ai.usage.input_tokens": 5},
    )
    (span,), events = run({}, resource(EKS, call))
    assert cost(span) == {"cost.unpriced_reason": "unknown_model"}
    assert list(events) == [Event("unpriced", "unknown_model", 1)]
    (span,), _ = run({"llm": {"enabled": False}}, resource(EKS, call))
    assert span["cost.model"] == "ec2.included_in_segment"


def test_an_llm_span_that_is_a_local_root_is_priced_by_tokens() -> None:
    call = make_span(
        "chat",
        kind=CLIENT,
        attrs={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.output_tokens": 1000},
    )
    (span,), _ = run({}, resource(EKS, call))
    assert span["cost.model"] == "llm.tokens"
    assert usd(span) == pytest.approx(1000 * 10e-6)


# -- bad input --------------------------------------------------------------------------


BAD_INPUT = [
    # (resource, span, expected cost attributes or reason)
    (EKS, make_span(duration=0), 0.0),  # a zero duration costs nothing
    (EKS, make_span(start=T0, duration=-5), "bad_attribute"),  # ends before it starts
    (EKS, make_span(start=0, duration=SECOND), "bad_attribute"),  # no start time
    (EKS, make_span(start=T0, duration=400 * 24 * 3600 * SECOND), "bad_attribute"),
    (
        EKS,
        child(
            kind=CLIENT, attrs={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": "12"}
        ),
        "bad_attribute",
    ),
    (
        EKS,
        child(
            kind=CLIENT,
            attrs={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": math.nan},
        ),
        "bad_attribute",
    ),
    (
        EKS,
        child(
            kind=CLIENT,
            attrs={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.output_tokens": 10**15},
        ),
        "bad_attribute",
    ),
    (
        EKS,
        child(
            kind=CLIENT, attrs={"gen_ai.request.model": "gpt-4o", "gen_ai.usage.output_tokens": -3}
        ),
        "bad_attribute",
    ),
    (
        EKS,
        child(
            kind=CLIENT, attrs={"gen_ai.request.model": ["gpt-4o"], "gen_ai.usage.output_tokens": 3}
        ),
        "bad_attribute",
    ),
    ({**EKS, "cloud.region": "mars-north-1"}, make_span(), "unknown_region"),
    ({**EKS, "host.type": "m99.galactic"}, make_span(), "unknown_instance_type"),
    ({**EKS, "host.type": 5}, make_span(), "bad_attribute"),
    ({**EKS, "host.type": ["m5.large"]}, make_span(), "bad_attribute"),
    ({**LAMBDA, "faas.max_memory": "1536"}, make_span(), "bad_attribute"),
    ({**LAMBDA, "faas.max_memory": math.inf}, make_span(), "bad_attribute"),
    ({**EKS, "aws.ec2.instance.lifecycle": 3}, make_span(), 0.096 / 3600),  # not spot
    (None, make_span(), "no_resource_info"),
    ({"cloud.provider": "azure", "host.type": "Standard_D2s_v5"}, make_span(), "no_resource_info"),
]


@pytest.mark.parametrize(("resource_attrs", "span", "expected"), BAD_INPUT)
def test_bad_input_is_unpriced_with_a_reason(
    resource_attrs: Mapping[str, Value] | None, span: Span, expected: str | float
) -> None:
    (result,), events = run({}, resource(resource_attrs, span))
    if isinstance(expected, str):
        assert cost(result) == {"cost.unpriced_reason": expected}
        assert list(events) == [Event("unpriced", expected, 1)]
    else:
        assert usd(result) == pytest.approx(expected)
        assert events.count("unpriced") == 0


# -- plausibility -------------------------------------------------------------------------

HOUR = 3600 * SECOND
GPT = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}


@pytest.mark.parametrize(
    ("config", "span", "expected"),
    [
        # A 3-hour batch job ending now is charged for its 3 hours.
        ({}, make_span(duration=3 * HOUR), 0.096 * 3),
        ({}, make_span(duration=24 * HOUR), 0.096 * 24),  # the limit itself is plausible
        ({}, make_span(duration=24 * HOUR + 1), "implausible_duration"),
        ({"limits": {"max_duration": "48h"}}, make_span(duration=25 * HOUR), 0.096 * 25),
        # gpt-4o output: 10 USD per million tokens. A billion tokens is a sender's number.
        (
            {},
            child(kind=CLIENT, attrs={**GPT, "gen_ai.usage.output_tokens": 10**9}),
            "implausible_tokens",
        ),
        (
            {},
            child(
                kind=CLIENT,
                attrs={
                    **GPT,
                    "gen_ai.usage.input_tokens": 1_000_001,
                    "gen_ai.usage.output_tokens": 1_000_000,
                },
            ),
            "implausible_tokens",
        ),
        ({}, child(kind=CLIENT, attrs={**GPT, "gen_ai.usage.output_tokens": 2_000_000}), 20.0),
        (
            {"limits": {"max_span_usd": 10}},
            child(kind=CLIENT, attrs={**GPT, "gen_ai.usage.output_tokens": 2_000_000}),
            "implausible_cost",
        ),
        ({"limits": {"max_span_usd": 0.05}}, make_span(duration=HOUR), "implausible_cost"),
        (
            {
                "rules": [
                    {
                        "name": "search",
                        "match": {"service.name": "checkout"},
                        "per_unit_usd": 0.5,
                        "unit_attribute": "queries",
                    }
                ]
            },
            make_span(attrs={"queries": 1_000_000}),
            "implausible_cost",
        ),
    ],
)
def test_implausible_numbers_are_not_booked(
    config: dict[str, Any], span: Span, expected: str | float
) -> None:
    (result,), events = run(config, resource({**EKS, "service.name": "checkout"}, span))
    if isinstance(expected, str):
        assert cost(result) == {"cost.unpriced_reason": expected}
        assert list(events) == [Event("unpriced", expected, 1)]
    else:
        assert usd(result) == pytest.approx(expected, rel=1e-9)


def test_empty_batches_and_resources() -> None:
    spans, events = run({}, ResourceSpans(), resource(EKS))
    assert spans == [] and not events
    batch = ExportTraceServiceRequest()
    changes = Changes(0)
    CostPlugin({}).annotate(batch, changes, Events())
    assert not changes


# -- the hot path stays local ------------------------------------------------------------


def test_no_network_while_processing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Built first: building may read the snapshot file; processing must not touch the network.
    plugin = CostPlugin(
        {"rules": [{"name": "s", "match": {"rpc.service": "S3"}, "per_unit_usd": 1e-6}]}
    )
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise OSError("network access while processing spans")

    for target, name in [
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket.socket, "sendto"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
    ]:
        monkeypatch.setattr(target, name, refuse)
    llm = {
        "gen_ai.request.model": "claude-3-5-sonnet",
        "gen_ai.usage.input_tokens": 50,
        "gen_ai.usage.output_tokens": 5,
    }
    batch = ExportTraceServiceRequest(
        resource_spans=[
            resource(EKS, make_span(), child(attrs=llm), child(attrs={"rpc.service": "S3"})),
            resource(LAMBDA, make_span(attrs={"faas.trigger": "http"})),
            resource({**EKS, "cloud.region": "ap-south-2", "host.type": "m8g.large"}, make_span()),
            resource(
                None,
                child(attrs={"gen_ai.request.model": "brand-new", "gen_ai.usage.input_tokens": 1}),
            ),
        ]
    )
    events = Events()
    changes = Changes(span_count(batch))
    plugin.annotate(batch, changes, events)
    plugin.close()
    assert calls == []
    assert events.count("priced") + events.count("unpriced") == span_count(batch)


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"prise": {}}, "prise"),
        ({"minimum_charge_usd": -1}, "minimum_charge_usd"),
        ({"minimum_charge_usd": "0.01"}, "minimum_charge_usd"),
        ({"trust_upstream": "yes"}, "trust_upstream"),
        ({"spot": {"discount": 1.0}}, "spot.discount"),
        ({"spot": {"discount": -0.1}}, "spot.discount"),
        ({"spot": {"attribute": ""}}, "spot.attribute"),
        ({"spot": {"values": []}}, "spot.values"),
        ({"spot": {"values": ["spot", 1]}}, "spot.values[1]"),
        ({"spot": {"values": [" "]}}, "spot.values[0]"),
        ({"spot": {"lifecycle": "spot"}}, "spot.lifecycle"),
        ({"fargate": {"services": {"api": {"vcpu": 1}}}}, "fargate.services.api.memory_gb"),
        (
            {"fargate": {"services": {"api": {"vcpu": 0, "memory_gb": 1}}}},
            "fargate.services.api.vcpu",
        ),
        (
            {"fargate": {"services": {"api": {"vcpu": 1, "memory_gb": 1, "arch": "sparc"}}}},
            "fargate.services.api.arch",
        ),
        ({"fargate": {"services": {"api": 1}}}, "fargate.services.api"),
        ({"fargate": {"tasks": {}}}, "fargate.tasks"),
        ({"lambda": {"max_memory_unit": "kb"}}, "lambda.max_memory_unit"),
        ({"llm": {"enabled": 1}}, "llm.enabled"),
        ({"prices": {"bundled": {"enabled": "no"}}}, "prices.bundled.enabled"),
        ({"prices": {"azure": {}}}, "prices.azure"),
        ({"rules": [{"name": "x", "match": {"a": "b"}}]}, "rules[0].per_hour_usd"),
        ({"limits": {"max_span_usd": 0}}, "limits.max_span_usd"),
        ({"limits": {"max_span_usd": "100"}}, "limits.max_span_usd"),
        ({"limits": {"max_tokens": -1}}, "limits.max_tokens"),
        ({"limits": {"max_duration": "0s"}}, "limits.max_duration"),
        ({"limits": {"max_duration": "400d"}}, "limits.max_duration"),
        ({"limits": {"max_duration": 5}}, "limits.max_duration"),
        ({"limits": {"max_cost": 1}}, "limits.max_cost"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CostPlugin(config)
    assert caught.value.key == key


def test_full_config_and_entry_point() -> None:
    config = {
        "prices": {"aws_pricelist": {"enabled": False}, "bundled": {"enabled": True}},
        "minimum_charge_usd": 0.0,
        "trust_upstream": False,
        "spot": {"attribute": "aws.ec2.instance.lifecycle", "values": ["spot"], "discount": 0.7},
        "fargate": {"services": {"api": {"vcpu": 0.5, "memory_gb": 1, "arch": "x86_64"}}},
        "lambda": {"max_memory_unit": "auto"},
        "llm": {"enabled": True},
        "rules": [],
        "limits": {"max_span_usd": 1000, "max_tokens": 2000000, "max_duration": "24h"},
    }
    spec = load_plugin("spancost.cost")
    assert spec.factory is CostPlugin
    plugin = spec.factory(config)
    plugin.close()


def test_plans_follow_price_changes() -> None:
    """Resource plans are cached, and dropped after a minute so that refreshed prices apply."""
    plugin = CostPlugin({})
    batch = ExportTraceServiceRequest(resource_spans=[resource(EKS, make_span())])
    plugin.annotate(batch, Changes(1), Events())
    plugin.annotate(batch, Changes(1), Events())
    assert len(plugin._plans) == 1
    plugin._plans_expire = 0.0  # a minute later
    plugin.annotate(ExportTraceServiceRequest(), Changes(0), Events())
    assert plugin._plans == {}


def test_owned_keys() -> None:
    assert sorted(OWNED_KEYS) == sorted(
        [
            "cost.usd",
            "cost.currency",
            "cost.source",
            "cost.model",
            "cost.price_as_of",
            "cost.instance_type",
            "cost.unpriced_reason",
        ]
    )


def test_through_the_sidecar_core_in_the_fast_form() -> None:
    """Configured by name as the collector does; the answer is the changes only."""
    from spancost.changes import apply  # noqa: PLC0415
    from spancost.sidecar.instances import PluginInstances  # noqa: PLC0415

    instances = PluginInstances()
    try:
        instances.configure("python/cost", "spancost.cost", '{"minimum_charge_usd": 0}')
        batch = ExportTraceServiceRequest(
            resource_spans=[resource(EKS, child(), make_span("root", duration=1_500_000_000))]
        )
        result = instances.process("python/cost", batch.SerializeToString())
        assert result.traces is None and result.changes is not None
        apply(batch, result.changes)
        nested, root = (attribute_map(s.attributes) for s in all_spans(batch))
        assert usd(root) == pytest.approx(0.096 * 1.5 / 3600, rel=1e-12)
        assert usd(nested) == 0.0
        assert sorted(result.events, key=repr) == [Event("priced", "bundled", 2)]
    finally:
        instances.close()
