"""The Sidecar service over a real gRPC server on a unix socket, in both server modes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spancost.changes import apply
from spancost.plugin import ExportTraceServiceRequest
from spancost.sidecar.address import parse_listen_address
from spancost.sidecar.instances import PluginInstances
from spancost.sidecar.server import ServerOptions, SidecarServer
from spancost.wire.v1 import sidecar_pb2, sidecar_pb2_grpc
from tests.builders import all_spans, attribute_map, batch, resource_spans, span

Stub = sidecar_pb2_grpc.SidecarStub


def configure(stub: Stub, plugin: str, config: Any, instance: str = "python/env") -> str:
    response = stub.Configure(
        sidecar_pb2.ConfigureRequest(
            instance=instance, plugin=plugin, config_json=json.dumps(config)
        ),
        timeout=5,
    )
    version: str = response.plugin_version
    return version


def process(
    stub: Stub, request: ExportTraceServiceRequest | bytes, instance: str = "python/env"
) -> sidecar_pb2.ProcessTracesResponse:
    traces = request if isinstance(request, bytes) else request.SerializeToString()
    response: sidecar_pb2.ProcessTracesResponse = stub.ProcessTraces(
        sidecar_pb2.ProcessTracesRequest(instance=instance, traces=traces), timeout=5
    )
    return response


def result_of(
    request: ExportTraceServiceRequest, response: sidecar_pb2.ProcessTracesResponse
) -> ExportTraceServiceRequest:
    """The batch the collector forwards: the full form, or the request with the changes applied."""
    if response.WhichOneof("result") == "changes":
        result = ExportTraceServiceRequest()
        result.CopyFrom(request)
        apply(result, response.changes)
        return result
    return ExportTraceServiceRequest.FromString(response.traces)


def rpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


@pytest.fixture
def sdk_batch() -> Iterator[ExportTraceServiceRequest]:
    """A realistic batch from the OpenTelemetry SDK: parents, events, links, attributes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "checkout", "deployment.environment.name": "Production"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.checkout", "1.2.3", attributes={"scope.attr": "s"})
    with tracer.start_as_current_span("GET /cart", kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("http.request.method", "GET")
        parent.add_event("cache-miss", {"key": "cart:1"})
        with tracer.start_as_current_span(
            "SELECT cart",
            links=[trace.Link(parent.get_span_context(), {"link.kind": "follows"})],
        ) as child:
            child.set_attribute("db.system", "postgresql")
            child.set_attribute("rows", 3)
            child.set_status(trace.Status(trace.StatusCode.ERROR, "slow"))
    provider.shutdown()
    yield encode_spans(exporter.get_finished_spans())


def test_health_is_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "spancost.wire.v1.Sidecar"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_configure_returns_the_plugin_version(stub: Stub) -> None:
    version = configure(stub, "spancost.environment", {"drop": ["ci"]})
    assert version.startswith("spancost 0.")


def _configure_response(
    stub: Stub, plugin: str, config: Any, kind: sidecar_pb2.Kind = sidecar_pb2.KIND_PROCESSOR
) -> sidecar_pb2.ConfigureResponse:
    response: sidecar_pb2.ConfigureResponse = stub.Configure(
        sidecar_pb2.ConfigureRequest(
            instance="python/x", plugin=plugin, config_json=json.dumps(config), kind=kind
        ),
        timeout=5,
    )
    return response


def test_configure_tells_what_the_cost_plugin_owns(stub: Stub) -> None:
    cost = {"prices": {"aws_pricelist": {"enabled": False}}}
    response = _configure_response(stub, "spancost.cost", cost)
    ownership = response.ownership
    assert "cost.usd" in ownership.keys
    assert "cost.unpriced_reason" in ownership.keys
    assert [(a.key, a.string_value) for a in ownership.unprocessed] == [
        ("cost.unpriced_reason", "sidecar_unavailable")
    ]
    assert (ownership.unprocessed_event.event, ownership.unprocessed_event.reason) == (
        "unpriced",
        "sidecar_unavailable",
    )
    assert ownership.trusted_key == ""
    trusting = _configure_response(stub, "spancost.cost", {**cost, "trust_upstream": True})
    assert trusting.ownership.trusted_key == "cost.usd"
    # A chain owns what its steps own; the environment filter owns nothing.
    chain = {
        "steps": [
            {"plugin": "spancost.environment", "config": {"drop": ["ci"]}},
            {"plugin": "spancost.cost", "config": cost},
        ]
    }
    chained = _configure_response(stub, "spancost.chain", chain).ownership
    assert list(chained.keys) == list(ownership.keys)
    assert list(chained.unprocessed) == list(ownership.unprocessed)
    assert not _configure_response(stub, "spancost.environment", {}).HasField("ownership")


def test_configure_tells_what_the_totals_sink_books(stub: Stub, tmp_path: Path) -> None:
    config = {"database_url": f"sqlite:{tmp_path / 'totals.db'}"}
    response = _configure_response(stub, "spancost.totals", config, kind=sidecar_pb2.KIND_SINK)
    assert list(response.needs_owner) == ["cost.usd", "cost.unpriced_reason"]


def test_configure_invalid_argument_names_the_key(stub: Stub) -> None:
    error = rpc_error(lambda: configure(stub, "spancost.environment", {"drop": ["ci", 7]}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "config.drop[1]: must be a string, got integer"


def test_configure_unknown_plugin_is_not_found(stub: Stub) -> None:
    error = rpc_error(lambda: configure(stub, "spancost.nope", {}))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "spancost.environment" in (error.details() or "")


@pytest.mark.parametrize(
    ("plugin", "code"),
    [
        ("test.not_a_plugin", grpc.StatusCode.FAILED_PRECONDITION),
        ("test.missing_module", grpc.StatusCode.FAILED_PRECONDITION),
        ("test.broken_init", grpc.StatusCode.INTERNAL),
    ],
)
def test_configure_broken_plugins(stub: Stub, plugin: str, code: grpc.StatusCode) -> None:
    assert rpc_error(lambda: configure(stub, plugin, {})).code() == code


def test_round_trip_preserves_everything_it_keeps(
    stub: Stub, sdk_batch: ExportTraceServiceRequest
) -> None:
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    response = process(stub, sdk_batch)
    assert response.WhichOneof("result") == "changes", "the plugin answers in the fast form"
    assert result_of(sdk_batch, response) == sdk_batch
    assert list(response.events) == []
    spans = list(all_spans(sdk_batch))
    assert len(spans) == 2
    child = next(s for s in spans if s.name == "SELECT cart")
    parent = next(s for s in spans if s.name == "GET /cart")
    assert child.parent_span_id == parent.span_id
    assert child.links[0].span_id == parent.span_id
    assert parent.events[0].name == "cache-miss"
    assert attribute_map(sdk_batch.resource_spans[0].scope_spans[0].scope.attributes) == {
        "scope.attr": "s"
    }


def test_round_trip_with_tags_changes_only_the_tags(
    stub: Stub, sdk_batch: ExportTraceServiceRequest
) -> None:
    configure(stub, "spancost.environment", {"tag": {"production": {"env.tagged": True}}})
    response = process(stub, sdk_batch)
    result = result_of(sdk_batch, response)
    assert [(e.event, e.reason, e.spans) for e in response.events] == [
        ("tagged", "environment=production", 2)
    ]
    for before, after in zip(all_spans(sdk_batch), all_spans(result), strict=True):
        assert attribute_map(after.attributes) == {
            **attribute_map(before.attributes),
            "env.tagged": True,
        }
        del after.attributes[-1]
        assert after == before
    assert result.resource_spans[0].resource == sdk_batch.resource_spans[0].resource


def test_drop_reports_events(stub: Stub) -> None:
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    request = batch(
        resource_spans({"deployment.environment.name": "ci"}, [span(), span()]),
        resource_spans({"deployment.environment.name": "prod"}, [span("kept")]),
    )
    response = process(stub, request)
    result = result_of(request, response)
    assert [s.name for s in all_spans(result)] == ["kept"]
    assert [(e.event, e.reason, e.spans) for e in response.events] == [
        ("dropped", "environment=ci", 2)
    ]


def test_unknown_instance_is_failed_precondition(stub: Stub) -> None:
    error = rpc_error(lambda: process(stub, batch(), instance="python/other"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "python/other" in (error.details() or "")


def test_garbage_bytes_are_invalid_argument(stub: Stub) -> None:
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    error = rpc_error(lambda: process(stub, b"\xff\xff\xff\xff"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_plugin_that_raises_is_internal_and_server_keeps_serving(stub: Stub) -> None:
    configure(stub, "test.failing", {}, instance="python/failing")
    error = rpc_error(lambda: process(stub, batch(), instance="python/failing"))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "RuntimeError: boom" in (error.details() or "")
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    request = batch(resource_spans({}, [span()]))
    assert result_of(request, process(stub, request)) == request


def test_configure_replaces_an_instance(stub: Stub) -> None:
    request = batch(resource_spans({"deployment.environment.name": "ci"}, [span()]))
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    assert result_of(request, process(stub, request)) == ExportTraceServiceRequest()
    configure(stub, "spancost.environment", {"drop": ["qa"]})
    assert result_of(request, process(stub, request)) == request


def test_stopped_server_reports_not_serving_then_refuses(
    sidecar_server: SidecarServer, channel: grpc.Channel
) -> None:
    sidecar_server.stop(grace=0.5)
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError):
        health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)


def test_batches_beyond_grpcs_4_mib_default_pass(sidecar_server: SidecarServer) -> None:
    limit = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(sidecar_server.address.grpc_target, options=limit) as channel:
        stub = sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]
        configure(stub, "test.rename", {}, instance="python/rename")
        request = batch(resource_spans({}, [span("big", {"blob": "x" * (6 * 1024 * 1024)})]))
        response = process(stub, request, instance="python/rename")
        assert response.WhichOneof("result") == "traces"
        assert len(response.traces) > 6 * 1024 * 1024
        assert [s.name for s in all_spans(result_of(request, response))] == ["renamed"]


@pytest.mark.usefixtures("test_plugin_site")
def test_health_and_configure_answer_while_every_worker_is_busy(tmp_path: Path) -> None:
    options = ServerOptions(
        listen=parse_listen_address(f"unix://{tmp_path / 'busy.sock'}"),
        workers=1,
    )
    server = SidecarServer(options, PluginInstances())
    server.start()
    started, release = tmp_path / "started", tmp_path / "release"
    # Each batch holds the only worker until `release` exists (30 s bounds a hang).
    slow = {"seconds": 30, "started_file": str(started), "release_file": str(release)}
    try:
        with grpc.insecure_channel(server.address.grpc_target) as channel:
            stub = sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]
            configure(stub, "test.slow", slow, instance="python/slow")
            request = sidecar_pb2.ProcessTracesRequest(instance="python/slow", traces=b"")
            backlog = [stub.ProcessTraces.future(request, timeout=60) for _ in range(3)]
            deadline = time.monotonic() + 10
            while not started.exists():
                assert time.monotonic() < deadline, "the first batch never started"
                time.sleep(0.01)
            # Answered while every batch is still held: the order proves it, and the
            # RPC timeouts only bound a hang.
            health = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            configure(stub, "spancost.environment", {"drop": ["ci"]}, instance="python/other")
            assert not any(future.done() for future in backlog)
            release.touch()
            assert [future.result().WhichOneof("result") for future in backlog] == ["traces"] * 3
    finally:
        release.touch()
        server.stop(grace=5)


def test_the_stream_answers_each_batch_in_order(stub: Stub) -> None:
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    requests = [
        batch(resource_spans({"deployment.environment.name": env}, [span(f"s{n}")] * (n + 1)))
        for n, env in enumerate(["ci", "prod", "ci", "prod", "prod"])
    ]
    stream = stub.ProcessTracesStream(
        iter(
            sidecar_pb2.ProcessTracesRequest(instance="python/env", traces=r.SerializeToString())
            for r in requests
        ),
        timeout=10,
    )
    answers = list(stream)
    assert len(answers) == len(requests)
    for request, answer in zip(requests, answers, strict=True):
        assert answer == process(stub, request)  # the same answer as the unary call
    assert [[(e.event, e.spans) for e in a.events] for a in answers] == [
        [("dropped", 1)],
        [],
        [("dropped", 3)],
        [],
        [],
    ]


def test_an_error_ends_the_stream_with_the_batchs_status(stub: Stub) -> None:
    configure(stub, "spancost.environment", {"drop": ["ci"]})
    good = sidecar_pb2.ProcessTracesRequest(
        instance="python/env", traces=batch(resource_spans({}, [span()])).SerializeToString()
    )
    lost = sidecar_pb2.ProcessTracesRequest(instance="python/other", traces=b"")
    stream = stub.ProcessTracesStream(iter([good, lost, good]), timeout=10)
    assert next(stream).WhichOneof("result") == "changes"
    error = rpc_error(lambda: next(stream))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "python/other" in (error.details() or "")
