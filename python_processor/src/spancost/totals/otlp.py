"""The OTLP adapter: a batch of enriched spans → one `SpanContribution` per span.

The only totals module that knows protobuf. It reads what ``spancost.cost``
wrote (``cost.usd``, ``cost.unpriced_reason``) and the facts that name a trace
(``service.name``, ``cloud.account.id``, the deployment environment, the root's
transaction attribute), and nothing else: deciding is left to the pure core.

Odd input is data: an attribute of the wrong type (an integer ``service.name``)
counts as absent and is counted in `events` as ``skipped`` with reason
``<fact>_type=<otlp type>`` (``service``, ``account``, ``environment``,
``transaction``, ``owner``, ``pod``); a ``cost.usd`` that is not a finite double >= 0, or above
`MAX_SPAN_COST_USD`, makes the span unpriced with reason ``cost_invalid``. Every span
of the batch yields a contribution, whatever it holds (invalid ids and times are for
`split` to quarantine), and a contribution any store can hold, so that one odd span
can never make a whole batch unstorable (retried forever, or dropped with its
neighbours): a NUL character (which PostgreSQL text cannot hold) in a name or label
becomes U+FFFD, counted as ``sanitized`` with reason ``<fact>_nul`` (``name`` and
``unpriced_reason`` besides the facts above); a time beyond the signed 64-bit
nanoseconds a database column holds (after 2262-04-11) is read as the last of them,
counted as ``sanitized`` with reason ``time_out_of_range`` (`split` then quarantines
the span as ``future``).
"""

from __future__ import annotations

import math
from typing import Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from spancost.allocation.sampling import adjusted_count
from spancost.plugin import Events
from spancost.totals.aggregate import SpanContribution
from spancost.vocabulary import normalize_environment
from spancost.vocabulary.keys import (
    BUSINESS_TRANSACTION,
    CLOUD_ACCOUNT_ID,
    COST_MODEL,
    COST_UNPRICED_REASON,
    COST_USD,
    ENVIRONMENT_KEYS,
    K8S_POD_UID,
    SERVICE_NAME,
)
from spancost.vocabulary.limits import INT64_MAX, MAX_SPAN_USD
from spancost.vocabulary.otlp import (
    FLAG_CONTEXT_HAS_IS_REMOTE,
    FLAG_CONTEXT_IS_REMOTE,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_SERVER,
    first_values,
    value_type,
)

__all__ = [
    "EVENT_SANITIZED",
    "MAX_SPAN_COST_USD",
    "MAX_TIME_NS",
    "REASON_COST_INVALID",
    "REASON_COST_MISSING",
    "contributions",
]

_NODE_MODEL: Final = "ec2."
"""The models of compute a node's allocation covers (the span's price is an estimate)."""

REASON_COST_MISSING: Final = "cost_missing"
"""Neither ``cost.usd`` nor ``cost.unpriced_reason``: the span was not priced (e.g. the
sidecar failed and ``on_error: pass`` forwarded the batch unchanged)."""
REASON_COST_INVALID: Final = "cost_invalid"
MAX_SPAN_COST_USD: Final = MAX_SPAN_USD
"""Above, ``cost.usd`` is ``cost_invalid``: the pricer's own bound."""
MAX_TIME_NS: Final = INT64_MAX
"""The last instant a signed 64-bit nanosecond column holds (2262-04-11)."""
EVENT_SANITIZED: Final = "sanitized"

# A local root, as spancost.pricing.compute.is_local_root decides (inlined in the hot
# loop below, with a test keeping them equal).
_ENTRY_KINDS: Final = frozenset({SPAN_KIND_SERVER, SPAN_KIND_CONSUMER})


def _clean(text: str, fact: str, events: Events | None, spans: int = 1) -> str:
    """`text` with any NUL character replaced by U+FFFD (counted)."""
    if "\x00" not in text:
        return text
    if events is not None:
        events.add(EVENT_SANITIZED, reason=f"{fact}_nul", spans=spans)
    return text.replace("\x00", "\ufffd")


def _time(ns: int, events: Events | None) -> int:
    if ns <= MAX_TIME_NS:
        return ns
    if events is not None:
        events.add(EVENT_SANITIZED, reason="time_out_of_range")
    return MAX_TIME_NS


def _text(value: AnyValue | None, fact: str, events: Events | None, spans: int = 1) -> str | None:
    """A string attribute, stripped; None if absent, blank, or (counted) of another type."""
    if value is None:
        return None
    which = value.WhichOneof("value")
    if which == "string_value":
        return _clean(value.string_value.strip(), fact, events, spans) or None
    if which is not None and events is not None:
        events.add("skipped", reason=f"{fact}_type={value_type(value)}", spans=spans)
    return None


def _environment(values: dict[str, AnyValue], events: Events | None, spans: int = 1) -> str | None:
    for key in ENVIRONMENT_KEYS:
        name = _text(values.get(key), "environment", events, spans)
        if name is not None:
            return normalize_environment(name)
    return None


def _cost(values: dict[str, AnyValue], events: Events | None) -> tuple[float, str | None]:
    """(cost in USD, None) for a priced span; (0.0, reason) for an unpriced one."""
    usd = values.get(COST_USD)
    if usd is not None:
        if usd.WhichOneof("value") == "double_value":
            number = usd.double_value
            if math.isfinite(number) and 0 <= number <= MAX_SPAN_COST_USD:
                return number + 0.0, None  # + 0.0: -0.0 becomes 0.0
        return 0.0, REASON_COST_INVALID
    reason = values.get(COST_UNPRICED_REASON)
    if reason is None:
        return 0.0, REASON_COST_MISSING
    if reason.WhichOneof("value") == "string_value" and reason.string_value:
        return 0.0, _clean(reason.string_value, "unpriced_reason", events)
    return 0.0, REASON_COST_INVALID


def contributions(
    batch: ExportTraceServiceRequest,
    *,
    transaction_attribute: str = BUSINESS_TRANSACTION,
    owner_attribute: str | None = None,
    default_pod: str | None = None,
    events: Events | None = None,
) -> list[SpanContribution]:
    """One contribution per span of `batch`, in document order.

    `transaction_attribute` (``TotalsConfig.transaction_attribute``) is read on
    root spans only, from the span's attributes, else its resource's; the owner
    (``TotalsConfig.owner_attribute``) from the resource only: it says who sent the
    span, which a span's own attributes must not claim. `default_pod` is the pod of
    the spans whose resource names none (outside Kubernetes: the host).
    """
    resource_keys = frozenset(
        (
            SERVICE_NAME,
            CLOUD_ACCOUNT_ID,
            K8S_POD_UID,
            transaction_attribute,
            *ENVIRONMENT_KEYS,
        )
    )
    if owner_attribute is not None:
        resource_keys |= {owner_attribute}
    span_keys = frozenset((COST_USD, COST_UNPRICED_REASON, COST_MODEL, transaction_attribute))
    result: list[SpanContribution] = []
    append = result.append
    for resource_spans in batch.resource_spans:
        spans = sum(len(scope_spans.spans) for scope_spans in resource_spans.scope_spans)
        if not spans:
            continue
        resource = first_values(resource_spans.resource.attributes, resource_keys)
        service = _text(resource.get(SERVICE_NAME), "service", events, spans)
        account = _text(resource.get(CLOUD_ACCOUNT_ID), "account", events, spans)
        resource_environment = _environment(resource, events, spans)
        resource_transaction = resource.get(transaction_attribute)
        owner = (
            None
            if owner_attribute is None
            else _text(resource.get(owner_attribute), "owner", events, spans)
        )
        pod = _text(resource.get(K8S_POD_UID), "pod", events, spans) or default_pod
        wanted = span_keys if resource_environment else span_keys.union(ENVIRONMENT_KEYS)
        # The sink's hot loop (every span it stores): the contribution built
        # positionally (SpanContribution's field order), rare checks guarded.
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                values = first_values(span.attributes, wanted)
                cost_usd, unpriced_reason = _cost(values, events)
                model = values.get(COST_MODEL)
                compute = model is not None and model.string_value.startswith(_NODE_MODEL)
                is_root = not span.parent_span_id.strip(b"\x00")  # absent, or all zeros
                flags = span.flags
                if is_root:
                    segment = True
                elif flags & FLAG_CONTEXT_HAS_IS_REMOTE:
                    segment = bool(flags & FLAG_CONTEXT_IS_REMOTE)
                else:
                    segment = span.kind in _ENTRY_KINDS
                trace_state = span.trace_state
                weight = adjusted_count(trace_state) if trace_state else 1.0
                transaction = None
                if is_root:
                    transaction = _text(
                        values.get(transaction_attribute), "transaction", events
                    ) or _text(resource_transaction, "transaction", events)
                start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
                if start_ns > MAX_TIME_NS or end_ns > MAX_TIME_NS:
                    start_ns, end_ns = _time(start_ns, events), _time(end_ns, events)
                name = span.name
                if "\x00" in name:
                    name = _clean(name, "name", events)
                append(
                    SpanContribution(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        start_ns,
                        end_ns,
                        cost_usd,
                        unpriced_reason,
                        is_root,
                        name,
                        service,
                        resource_environment or _environment(values, events),
                        account,
                        transaction,
                        owner,
                        pod,
                        segment,
                        weight,
                        compute,
                    )
                )
    return result
