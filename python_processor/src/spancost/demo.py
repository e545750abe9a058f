"""``spancost demo``: realistic traffic for a running collector, so that a first run shows money.

One request is one trace. Every service says ``deployment.environment.name``
``production``, runs in AWS account 123456789012 (AWS's documentation example)
in us-east-1, and sends the attributes ``spancost.cost`` prices from:

- ``checkout``: ``storefront`` (EKS on m6i.large) ``POST /checkout`` calls
  ``payments`` (EKS on c7g.large), which writes to its database, then publishes
  ``order-placed``, which the Lambda function ``send-receipt`` (512 MB) consumes;
- ``search``: ``storefront`` ``GET /search`` calls ``search-api`` (EKS on
  m7i.xlarge), which calls an LLM (OpenAI gpt-4o, with ``gen_ai.usage.*`` token
  counts);
- any other transaction name: ``storefront`` ``POST /<name>`` calls ``catalog``
  (EKS on t3.medium), which reads its database.

The root span names its transaction (``business.transaction``); the
downstream services' SERVER spans are children of the storefront's CLIENT
spans, with the OTLP flags saying their parent is remote, as an SDK sends them.
The first request also calls ``recommendations``, whose resource has no
``host.type`` (as when no resource detector sets it): the one span spancost
cannot price, ``unknown_instance_type``. After every `CI_EVERY` production
requests comes one from CI (``deployment.environment.name`` ``ci``), which
configs/local.yaml drops.

Pure: `plan_requests` and `build_batches` take the options, a seed and ``now``
and return OTLP messages. `send` hands them to an `Exporter`, OTLP/gRPC or
OTLP/HTTP (`open_exporter`). Durations and token counts follow the seed, so one
seed always costs the same; trace and span ids follow the seed and ``now``, so a
second run adds traces instead of repeating the first (the totals store keeps
each span id of a trace once).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import random
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from spancost import __version__
from spancost.attributes import AttributeValue, assign
from spancost.changes import span_count
from spancost.errors import SpancostError
from spancost.pricing.model import UnpricedReason
from spancost.vocabulary.keys import (
    BUSINESS_TRANSACTION,
    CLOUD_ACCOUNT_ID,
    CLOUD_AVAILABILITY_ZONE,
    CLOUD_PLATFORM,
    CLOUD_PROVIDER,
    CLOUD_REGION,
    DEPLOYMENT_ENVIRONMENT_NAME,
    FAAS_MAX_MEMORY,
    FAAS_TRIGGER,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    HOST_ARCH,
    HOST_TYPE,
    K8S_NAMESPACE_NAME,
    K8S_NODE_NAME,
    OS_TYPE,
    SERVICE_NAME,
)
from spancost.vocabulary.otlp import FLAG_CONTEXT_HAS_IS_REMOTE, FLAG_CONTEXT_IS_REMOTE

__all__ = [
    "CI",
    "CI_EVERY",
    "DEFAULT_ENDPOINTS",
    "DEFAULT_REQUESTS",
    "DEFAULT_SEED",
    "DEFAULT_TRANSACTIONS",
    "MAX_REQUESTS",
    "PRODUCTION",
    "PROTOCOLS",
    "TRACES_PER_BATCH",
    "UNPRICED_REASON",
    "UNPRICED_SERVICE",
    "DemoRequest",
    "DemoSendError",
    "Endpoint",
    "Exporter",
    "OtlpProtocol",
    "Sent",
    "build_batches",
    "open_exporter",
    "parse_endpoint",
    "plan_requests",
    "send",
    "summary",
    "transaction_names",
]

OtlpProtocol = Literal["grpc", "http/protobuf"]
"""As ``OTEL_EXPORTER_OTLP_PROTOCOL`` names them."""
PROTOCOLS: Final[tuple[OtlpProtocol, ...]] = ("grpc", "http/protobuf")
DEFAULT_ENDPOINTS: Final[Mapping[OtlpProtocol, str]] = {
    "grpc": "127.0.0.1:4317",
    "http/protobuf": "http://127.0.0.1:4318",
}
"""Where configs/local.yaml (`make run`) listens."""
HTTP_TRACES_PATH: Final = "/v1/traces"

DEFAULT_TRANSACTIONS: Final = ("checkout", "search")
DEFAULT_REQUESTS: Final = 20
MAX_REQUESTS: Final = 10_000
DEFAULT_SEED: Final = 1
CI_EVERY: Final = 4
"""One CI request after every this many production requests (at least one in all)."""
TRACES_PER_BATCH: Final = 50
"""Traces per export request: a few hundred spans, far below any receiver's size limit."""

PRODUCTION: Final = "production"
CI: Final = "ci"
UNPRICED_REASON: Final[UnpricedReason] = "unknown_instance_type"
UNPRICED_SERVICE: Final = "recommendations"
ACCOUNT_ID: Final = "123456789012"
REGION: Final = "us-east-1"
SCOPE_NAME: Final = "spancost.demo"

MS: Final = 1_000_000
_SAMPLED: Final = 0x01  # W3C trace flags, the low byte of Span.flags
_LAST_TRACE_ENDS_BEFORE_NOW_NS: Final = 5_000 * MS
"""Every trace starts early enough to end before ``now`` (the longest takes about 2 s)."""

SERVER = Span.SPAN_KIND_SERVER
CLIENT = Span.SPAN_KIND_CLIENT
INTERNAL = Span.SPAN_KIND_INTERNAL
PRODUCER = Span.SPAN_KIND_PRODUCER
CONSUMER = Span.SPAN_KIND_CONSUMER


class DemoSendError(SpancostError):
    """The collector could not be reached, or refused a batch."""


# -- the services -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Service:
    """A process that sends spans: its resource (besides the environment) and, for the
    summary, what it runs on."""

    name: str
    runs_on: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


def _eks(name: str, host_type: str | None, arch: str, node: str) -> _Service:
    attributes: dict[str, AttributeValue] = {
        CLOUD_PROVIDER: "aws",
        CLOUD_PLATFORM: "aws_eks",
        CLOUD_REGION: REGION,
        CLOUD_AVAILABILITY_ZONE: f"{REGION}a",
        CLOUD_ACCOUNT_ID: ACCOUNT_ID,
        HOST_ARCH: arch,
        OS_TYPE: "linux",
        "k8s.cluster.name": "shop",
        K8S_NAMESPACE_NAME: name,
        K8S_NODE_NAME: node,
    }
    if host_type is not None:
        attributes[HOST_TYPE] = host_type
    return _Service(name, f"EKS {host_type or 'without host.type'}", attributes)


STOREFRONT: Final = _eks("storefront", "m6i.large", "amd64", "ip-10-0-12-34.ec2.internal")
PAYMENTS: Final = _eks("payments", "c7g.large", "arm64", "ip-10-0-40-7.ec2.internal")
SEARCH_API: Final = _eks("search-api", "m7i.xlarge", "amd64", "ip-10-0-21-90.ec2.internal")
CATALOG: Final = _eks("catalog", "t3.medium", "amd64", "ip-10-0-33-5.ec2.internal")
RECOMMENDATIONS: Final = _eks(UNPRICED_SERVICE, None, "amd64", "ip-10-0-50-12.ec2.internal")
SEND_RECEIPT: Final = _Service(
    "send-receipt",
    "Lambda",
    {
        CLOUD_PROVIDER: "aws",
        CLOUD_PLATFORM: "aws_lambda",
        CLOUD_REGION: REGION,
        CLOUD_ACCOUNT_ID: ACCOUNT_ID,
        "faas.name": "send-receipt",
        "faas.version": "$LATEST",
        FAAS_MAX_MEMORY: 512 * 1024 * 1024,  # bytes, as current semantic conventions
    },
)
LLM_MODEL: Final = "gpt-4o"


# -- one trace ----------------------------------------------------------------------


class _Trace:
    """The spans of one request, each with the service that sent it."""

    def __init__(self, ids: random.Random, environment: str) -> None:
        self._ids = ids
        self.environment = environment
        self.trace_id = _nonzero(ids, 16)
        self.spans: list[tuple[_Service, Span]] = []

    def span(
        self,
        service: _Service,
        name: str,
        kind: Span.SpanKind.ValueType,
        *,
        parent: Span | None,
        start: int,
        duration: int,
        attributes: Mapping[str, AttributeValue] | None = None,
        remote: bool = False,
    ) -> Span:
        """A span of `service`; `remote`: its parent is in another process."""
        span = Span(
            trace_id=self.trace_id,
            span_id=_nonzero(self._ids, 8),
            parent_span_id=b"" if parent is None else parent.span_id,
            name=name,
            kind=kind,
            flags=_SAMPLED | FLAG_CONTEXT_HAS_IS_REMOTE | (FLAG_CONTEXT_IS_REMOTE if remote else 0),
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
        )
        for key, value in (attributes or {}).items():
            assign(span.attributes.add(key=key).value, value)
        self.spans.append((service, span))
        return span


def _nonzero(rng: random.Random, size: int) -> bytes:
    """Random id bytes; all zeros is an invalid OTLP id."""
    while True:
        value = rng.randbytes(size)
        if any(value):
            return value


def _ms(rng: random.Random, low: int, high: int) -> int:
    """A duration between `low` and `high` milliseconds, in ns."""
    return rng.randint(low * MS, high * MS)


def _http_call(
    trace: _Trace,
    caller: Span,
    callee: _Service,
    method: str,
    route: str,
    *,
    start: int,
    duration: int,
) -> tuple[Span, Span]:
    """The storefront's CLIENT span under `caller`, and `callee`'s SERVER span inside it."""
    client = trace.span(
        STOREFRONT,
        method,
        CLIENT,
        parent=caller,
        start=start,
        duration=duration,
        attributes={
            "http.request.method": method,
            "server.address": callee.name,
            "server.port": 8080,
            "http.response.status_code": 200,
        },
    )
    server = trace.span(
        callee,
        f"{method} {route}",
        SERVER,
        parent=client,
        start=start + MS,
        duration=duration - 2 * MS,
        attributes={
            "http.request.method": method,
            "http.route": route,
            "http.response.status_code": 200,
        },
        remote=True,
    )
    return client, server


def _database(
    trace: _Trace,
    service: _Service,
    parent: Span,
    operation: str,
    table: str,
    *,
    start: int,
    rng: random.Random,
) -> None:
    trace.span(
        service,
        f"{operation} {table}",
        CLIENT,
        parent=parent,
        start=start,
        duration=_ms(rng, 2, 12),
        attributes={
            "db.system.name": "postgresql",
            "db.operation.name": operation,
            "db.collection.name": table,
        },
    )


def _checkout(trace: _Trace, root: Span, at: int, rng: random.Random) -> int:
    validate = trace.span(
        STOREFRONT, "validate cart", INTERNAL, parent=root, start=at, duration=_ms(rng, 4, 20)
    )
    at = validate.end_time_unix_nano + MS
    call, charge = _http_call(
        trace, root, PAYMENTS, "POST", "/charges", start=at, duration=_ms(rng, 60, 180)
    )
    _database(
        trace, PAYMENTS, charge, "INSERT", "orders", start=charge.start_time_unix_nano + MS, rng=rng
    )
    at = call.end_time_unix_nano + MS
    publish = trace.span(
        STOREFRONT,
        "send order-placed",
        PRODUCER,
        parent=root,
        start=at,
        duration=_ms(rng, 2, 8),
        attributes={
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "send",
            "messaging.destination.name": "order-placed",
        },
    )
    # The receipt goes out after the response, in a Lambda invocation of its own.
    trace.span(
        SEND_RECEIPT,
        "process order-placed",
        CONSUMER,
        parent=publish,
        start=publish.end_time_unix_nano + _ms(rng, 20, 120),
        duration=_ms(rng, 90, 400),
        attributes={
            FAAS_TRIGGER: "pubsub",
            "messaging.system": "aws_sqs",
            "messaging.operation.type": "process",
            "messaging.destination.name": "order-placed",
        },
        remote=True,
    )
    return publish.end_time_unix_nano


def _search(trace: _Trace, root: Span, at: int, rng: random.Random) -> int:
    parse = trace.span(
        STOREFRONT, "parse query", INTERNAL, parent=root, start=at, duration=_ms(rng, 1, 6)
    )
    retrieve, answer = _ms(rng, 15, 60), _ms(rng, 400, 1400)
    call, query = _http_call(
        trace,
        root,
        SEARCH_API,
        "POST",
        "/query",
        start=parse.end_time_unix_nano + MS,
        duration=retrieve + answer + 6 * MS,
    )
    candidates = trace.span(
        SEARCH_API,
        "retrieve candidates",
        INTERNAL,
        parent=query,
        start=query.start_time_unix_nano + MS,
        duration=retrieve,
    )
    trace.span(
        SEARCH_API,
        f"chat {LLM_MODEL}",
        CLIENT,
        parent=query,
        start=candidates.end_time_unix_nano + MS,
        duration=answer,
        attributes={
            GEN_AI_OPERATION_NAME: "chat",
            GEN_AI_PROVIDER_NAME: "openai",
            GEN_AI_REQUEST_MODEL: LLM_MODEL,
            GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
            GEN_AI_USAGE_INPUT_TOKENS: rng.randint(600, 2400),
            GEN_AI_USAGE_OUTPUT_TOKENS: rng.randint(60, 400),
            "server.address": "api.openai.com",
        },
    )
    return call.end_time_unix_nano


def _other(trace: _Trace, root: Span, at: int, rng: random.Random) -> int:
    handle = trace.span(
        STOREFRONT, "handle request", INTERNAL, parent=root, start=at, duration=_ms(rng, 2, 10)
    )
    call, items = _http_call(
        trace,
        root,
        CATALOG,
        "GET",
        "/items",
        start=handle.end_time_unix_nano + MS,
        duration=_ms(rng, 20, 90),
    )
    _database(
        trace, CATALOG, items, "SELECT", "items", start=items.start_time_unix_nano + MS, rng=rng
    )
    return call.end_time_unix_nano


def _recommendations(trace: _Trace, root: Span, at: int, rng: random.Random) -> int:
    call, _ = _http_call(
        trace,
        root,
        RECOMMENDATIONS,
        "GET",
        "/recommendations",
        start=at,
        duration=_ms(rng, 10, 40),
    )
    return call.end_time_unix_nano


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a request of one transaction does below its root span."""

    method: str
    route: str
    calls: str  # for the summary
    children: Callable[[_Trace, Span, int, random.Random], int]  # -> end of the response


def _shape(transaction: str) -> _Shape:
    if transaction == "checkout":
        return _Shape(
            "POST",
            "/checkout",
            f"storefront ({STOREFRONT.runs_on}) -> payments ({PAYMENTS.runs_on}),"
            f" send-receipt ({SEND_RECEIPT.runs_on})",
            _checkout,
        )
    if transaction == "search":
        return _Shape(
            "GET",
            "/search",
            f"storefront -> search-api ({SEARCH_API.runs_on}) -> {LLM_MODEL}"
            " (LLM, gen_ai.usage.* tokens)",
            _search,
        )
    return _Shape("POST", f"/{transaction}", f"storefront -> catalog ({CATALOG.runs_on})", _other)


# -- what to send -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """One request the demo sends: a trace of `transaction` in `environment`."""

    transaction: str
    environment: str = PRODUCTION
    unpriceable_call: bool = False
    """Also call `UNPRICED_SERVICE`, whose span spancost cannot price."""


def transaction_names(names: Iterable[str]) -> tuple[str, ...]:
    """The business transactions to send, stripped, each once; the defaults if none.

    Raises `ValueError` for a blank name.
    """
    result: list[str] = []
    for name in names:
        text = name.strip()
        if not text:
            raise ValueError(f"--business-transaction {name!r}: must not be blank")
        if text not in result:
            result.append(text)
    return tuple(result) or DEFAULT_TRANSACTIONS


def plan_requests(transactions: Sequence[str], requests: int) -> tuple[DemoRequest, ...]:
    """`requests` production requests of each of `transactions`, taking turns, and one CI
    request after every `CI_EVERY` of them (at least one). The first production request
    also makes the unpriceable call."""
    if not transactions or requests < 1:
        raise ValueError("the demo needs a transaction and a request")
    production = [DemoRequest(name) for _ in range(requests) for name in transactions]
    production[0] = replace(production[0], unpriceable_call=True)
    ci_requests = max(1, len(production) // CI_EVERY)
    ci = (DemoRequest(transactions[n % len(transactions)], CI) for n in range(ci_requests))
    planned: list[DemoRequest] = []
    for number, request in enumerate(production, start=1):
        planned.append(request)
        if number % CI_EVERY == 0:
            planned.extend(itertools.islice(ci, 1))
    planned.extend(ci)
    return tuple(planned)


def build_batches(
    requests: Sequence[DemoRequest],
    *,
    seed: int,
    now_ns: int,
    traces_per_batch: int = TRACES_PER_BATCH,
) -> Iterator[ExportTraceServiceRequest]:
    """The OTLP export requests of `requests`, in order, `traces_per_batch` traces each.

    The requests start a few hundred milliseconds apart and the last one ends before
    `now_ns`. In each batch, one ``ResourceSpans`` per service and environment.
    """
    # Demo data, not secrets: reproducible pseudo-random numbers are the point.
    shapes = random.Random(seed)  # noqa: S311
    ids = random.Random(f"{seed}:{now_ns}")  # noqa: S311
    starts = list(itertools.accumulate(_ms(shapes, 20, 300) for _ in requests))
    first = now_ns - _LAST_TRACE_ENDS_BEFORE_NOW_NS - (starts[-1] if starts else 0)
    for offset in range(0, len(requests), traces_per_batch):
        chunk = requests[offset : offset + traces_per_batch]
        yield _batch(
            [
                _trace(request, first + starts[offset + number], shapes, ids)
                for number, request in enumerate(chunk)
            ]
        )


def _trace(request: DemoRequest, start: int, rng: random.Random, ids: random.Random) -> _Trace:
    shape = _shape(request.transaction)
    trace = _Trace(ids, request.environment)
    root = trace.span(
        STOREFRONT,
        f"{shape.method} {shape.route}",
        SERVER,
        parent=None,
        start=start,
        duration=0,  # set below, once its children are placed
        attributes={
            "http.request.method": shape.method,
            "http.route": shape.route,
            "http.response.status_code": 200,
            BUSINESS_TRANSACTION: request.transaction,
        },
    )
    at = shape.children(trace, root, start + _ms(rng, 1, 4), rng) + MS
    if request.unpriceable_call:
        at = _recommendations(trace, root, at, rng) + MS
    root.end_time_unix_nano = at + _ms(rng, 1, 5)
    return trace


def _batch(traces: Iterable[_Trace]) -> ExportTraceServiceRequest:
    resources: dict[tuple[str, str], ResourceSpans] = {}
    for trace in traces:
        for service, span in trace.spans:
            key = (service.name, trace.environment)
            resource_spans = resources.get(key)
            if resource_spans is None:
                resource_spans = resources[key] = _resource_spans(service, trace.environment)
            resource_spans.scope_spans[0].spans.append(span)
    return ExportTraceServiceRequest(resource_spans=resources.values())


def _resource_spans(service: _Service, environment: str) -> ResourceSpans:
    resource_spans = ResourceSpans()
    attributes = {
        SERVICE_NAME: service.name,
        "service.version": "1.4.2",
        DEPLOYMENT_ENVIRONMENT_NAME: environment,
        **service.attributes,
    }
    for key, value in attributes.items():
        assign(resource_spans.resource.attributes.add(key=key).value, value)
    scope = resource_spans.scope_spans.add()
    scope.scope.name = SCOPE_NAME
    scope.scope.version = __version__
    return resource_spans


# -- where to send ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A collector's OTLP receiver."""

    protocol: OtlpProtocol
    target: str
    """gRPC: ``host:port``; HTTP: the URL the spans are POSTed to."""
    host: str
    secure: bool

    def __str__(self) -> str:
        return self.target

    @property
    def transport(self) -> str:
        return "OTLP/gRPC" if self.protocol == "grpc" else "OTLP/HTTP"

    @property
    def loopback(self) -> bool:
        """True if the endpoint is on this host."""
        if self.host.casefold() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_endpoint(text: str | None, protocol: OtlpProtocol) -> Endpoint:
    """The endpoint `text` names (None: `DEFAULT_ENDPOINTS`), for `protocol`.

    gRPC: ``host:port`` or ``http(s)://host:port`` (port 4317 if none; https: TLS);
    HTTP: ``http(s)://host:port[/path]`` (``http://`` if no scheme), `HTTP_TRACES_PATH`
    appended when there is no path, as OTLP exporters do with a base endpoint.
    Raises `ValueError` naming the problem.
    """
    raw = (text if text is not None else DEFAULT_ENDPOINTS[protocol]).strip()
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"--endpoint {raw!r}: the port is not a number from 0 to 65535") from None
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "the scheme must be http or https"
    elif not parts.hostname:
        problem = "it names no host"
    elif protocol == "grpc" and parts.path not in ("", "/"):
        problem = "an OTLP/gRPC endpoint has no path"
    if problem is not None or parts.hostname is None:
        raise ValueError(f"--endpoint {raw!r}: {problem}")
    host, secure = parts.hostname, parts.scheme == "https"
    if protocol == "grpc":
        address = f"[{host}]" if ":" in host else host
        return Endpoint(protocol, f"{address}:{port or 4317}", host, secure)
    path = parts.path if parts.path not in ("", "/") else HTTP_TRACES_PATH
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    return Endpoint(protocol, url, host, secure)


# -- sending ------------------------------------------------------------------------


class Exporter(Protocol):
    """Sends one export request and returns the collector's answer."""

    def export(self, batch: ExportTraceServiceRequest) -> ExportTraceServiceResponse: ...

    def close(self) -> None: ...


def _unreachable(endpoint: Endpoint, why: str) -> DemoSendError:
    return DemoSendError(
        f"cannot reach the collector at {endpoint} over {endpoint.transport} ({why});"
        " is it running? `make run` starts one on 127.0.0.1:4317 (gRPC) and :4318 (HTTP)"
    )


class _GrpcExporter:
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        # A proxy from the environment cannot reach this host's loopback.
        options = [("grpc.enable_http_proxy", 0)] if endpoint.loopback else []
        if endpoint.secure:
            credentials = grpc.ssl_channel_credentials()
            self._channel = grpc.secure_channel(endpoint.target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(endpoint.target, options)
        self._stub = TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def export(self, batch: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
        try:
            answer: ExportTraceServiceResponse = self._stub.Export(batch, timeout=self._timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise _unreachable(self._endpoint, f"{code.name}: {details}") from exc
            raise DemoSendError(
                f"the collector at {self._endpoint} refused a batch: {code.name}: {details}"
            ) from exc
        return answer

    def close(self) -> None:
        self._channel.close()


class _HttpExporter:
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        # A proxy from the environment cannot reach this host's loopback.
        handlers = [urllib.request.ProxyHandler({})] if endpoint.loopback else []
        self._opener = urllib.request.build_opener(*handlers)

    def export(self, batch: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
        request = urllib.request.Request(  # noqa: S310 - parse_endpoint allows http(s) only
            self._endpoint.target,
            data=batch.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace").strip()
            raise DemoSendError(
                f"the collector at {self._endpoint} refused a batch: HTTP {exc.code}"
                f" {exc.reason}{': ' + detail if detail else ''}"
            ) from exc
        except urllib.error.URLError as exc:
            raise _unreachable(self._endpoint, str(exc.reason)) from exc
        except OSError as exc:  # a timeout or a reset once connected
            raise _unreachable(self._endpoint, str(exc) or type(exc).__name__) from exc
        answer = ExportTraceServiceResponse()
        # A 200 whose body is not OTLP: accepted, without partial-success details.
        with contextlib.suppress(DecodeError):
            answer.ParseFromString(body)
        return answer

    def close(self) -> None:
        self._opener.close()


def open_exporter(endpoint: Endpoint, timeout: float) -> Exporter:
    """An exporter to `endpoint`; each export waits at most `timeout` seconds."""
    if endpoint.protocol == "grpc":
        return _GrpcExporter(endpoint, timeout)
    return _HttpExporter(endpoint, timeout)


@dataclass(frozen=True, slots=True)
class Sent:
    """What `send` sent, and what the collector said it rejected (OTLP partial success)."""

    batches: int = 0
    spans: int = 0
    rejected_spans: int = 0
    rejected_message: str = ""


def send(batches: Iterable[ExportTraceServiceRequest], exporter: Exporter) -> Sent:
    """Export every batch in order; `DemoSendError` at the first that fails."""
    sent = Sent()
    for batch in batches:
        try:
            answer = exporter.export(batch)
        except DemoSendError as exc:
            if sent.batches:
                raise DemoSendError(
                    f"{exc} (after {sent.batches} batches, {sent.spans} spans, were sent)"
                ) from exc
            raise
        rejected = answer.partial_success.rejected_spans
        sent = Sent(
            batches=sent.batches + 1,
            spans=sent.spans + span_count(batch),
            rejected_spans=sent.rejected_spans + rejected,
            rejected_message=answer.partial_success.error_message or sent.rejected_message,
        )
    return sent


def summary(requests: Sequence[DemoRequest], endpoint: Endpoint, sent: Sent) -> str:
    """What was sent, by transaction, and what to run next."""
    production: dict[str, int] = {}
    ci = 0
    for request in requests:
        if request.environment == CI:
            ci += 1
        else:
            production[request.transaction] = production.get(request.transaction, 0) + 1
    width = max(len(name) for name in [*production, "CI"])
    batches = f"{sent.batches} batch{'' if sent.batches == 1 else 'es'}"
    lines = [
        f"sent {len(requests)} requests, {sent.spans} spans in {batches},"
        f" to {endpoint} over {endpoint.transport}:",
        *(
            f"  {name:<{width}}  {count:>4}  {_shape(name).calls}"
            for name, count in production.items()
        ),
        f"  {'CI':<{width}}  {ci:>4}  {DEPLOYMENT_ENVIRONMENT_NAME}={CI}:"
        " configs/local.yaml drops them",
        f"one span is unpriceable on purpose: {UNPRICED_SERVICE} sends no {HOST_TYPE}"
        f" ({UNPRICED_REASON})",
    ]
    if sent.rejected_spans:
        lines.append(
            f"warning: the collector rejected {sent.rejected_spans} spans:"
            f" {sent.rejected_message or 'no reason given'}"
        )
    lines.append("next: spancost report  (the totals are stored within a second or two)")
    return "\n".join(lines)
