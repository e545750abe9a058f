"""``spancost.cost``: prices every span and writes the price on it.

Attributes written (every other ``cost.*`` attribute is left alone):

``cost.usd`` (double), ``cost.currency`` (``USD``), ``cost.source`` (who
answered: ``bundled``, ``aws_pricelist``, ``aws_spot``, ``genai-prices``,
``rule:<name>``), ``cost.model`` (how it was computed, e.g. ``ec2.on_demand.duration``),
``cost.price_as_of``, ``cost.instance_type`` (compute only) — or, for a span
that cannot be priced, only ``cost.unpriced_reason`` (``no_resource_info``,
``unknown_instance_type``, ``unknown_region``, ``unknown_model``,
``source_unavailable``, ``bad_attribute``, ``implausible_cost``,
``implausible_tokens``, ``implausible_duration``). These attributes are removed from
incoming spans (every copy of a repeated key) and recomputed, so no client can
set its own price; the plugin declares them as its `Ownership`, so that the
collector removes them too when the sidecar does not answer for a batch and
marks the spans ``cost.unpriced_reason = sidecar_unavailable``. With
``trust_upstream: true`` a span that already has a ``cost.usd`` double (from an
upstream spancost collector) passes untouched; the collector accepts that only
on pipelines whose receivers authenticate their senders.

How a span is priced, first that applies:

1. the first user rule that matches it, if that rule prices usage
   (``per_unit_usd``, or ``per_hour_usd`` with ``applies_to: all``);
2. its LLM token usage (``gen_ai.usage.*``), with genai-prices;
3. the compute of its service segment (EC2, Lambda, Fargate, or a
   ``per_hour_usd`` rule with ``applies_to: local_roots``): charged on the
   segment's local root, 0.0 (``<kind>.included_in_segment``) on the others.

See the README section "What is priced and how" for the formulas.

Node facts (``node_facts``): what a span ran on, learnt by the sidecar itself
(the Kubernetes Node and its pods, watched; EC2 or ECS metadata), replaces the
sender's ``host.type``, ``cloud.*`` and spot marker; see `spancost.facts.source`.

Plausibility (``limits``): a span whose own numbers would make it cost more than
``max_span_usd``, report more than ``max_tokens`` tokens, or charge compute for
more than ``max_duration`` is not priced but counted unpriced with reason
``implausible_cost``, ``implausible_tokens`` or ``implausible_duration``: token
counts and times are the sender's, and one absurd value must not breach a budget.

Speed: resource attributes are read once per ``ResourceSpans`` and the resource's
plan is cached; a scope's spans are only read attribute by attribute when its
serialized bytes contain a key that matters (``gen_ai.usage.``, a rule's
attribute, ...: `spancost.wire_scan`). Otherwise each span costs a few field reads, and only local
roots get an attribute change of their own: the rest share one range.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, cast

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from spancost.attributes import AttributeValue
from spancost.changes import Changes
from spancost.config import parse
from spancost.errors import ConfigError
from spancost.facts.source import ORIGIN_KUBERNETES, NodeFactsSource
from spancost.plugin import AnnotatingPlugin, Events, ExportTraceServiceRequest, Ownership
from spancost.pricing.catalog import PriceBook, build_price_book
from spancost.pricing.compute import (
    ComputeSettings,
    FargateTask,
    MemoryUnit,
    SegmentPricing,
    is_local_root,
    normalize_arch,
    plan_compute,
    span_duration_ns,
)
from spancost.pricing.facts import RESOURCE_KEYS, ResourceFacts, as_count
from spancost.pricing.llm import LLM_KEYS, LlmPricer, token_usage
from spancost.pricing.model import Arch, Priced, Unpriced, UnpricedReason
from spancost.pricing.rules import Rule, first_match, rules_of, span_triggers
from spancost.settings.cost import CostSettings
from spancost.vocabulary.keys import (
    COST_CURRENCY,
    COST_INSTANCE_TYPE,
    COST_KEYS,
    COST_MODEL,
    COST_PRICE_AS_OF,
    COST_SOURCE,
    COST_UNPRICED_REASON,
    COST_USD,
    FAAS_TRIGGER,
    GEN_AI_USAGE_PREFIX,
    K8S_NODE_NAME,
    K8S_POD_UID,
)
from spancost.vocabulary.limits import MAX_DURATION_NS, MAX_SPAN_USD
from spancost.vocabulary.otlp import (
    FLAG_CONTEXT_HAS_IS_REMOTE,
    FLAG_CONTEXT_IS_REMOTE,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_SERVER,
    Value,
    read_values,
)
from spancost.wire_scan import scope_blobs, spans_containing

__all__ = ["REASON_SIDECAR_UNAVAILABLE", "CostPlugin"]

logger = logging.getLogger(__name__)

REASON_SIDECAR_UNAVAILABLE: Final = "sidecar_unavailable"
"""Written by the collector on a span whose batch the sidecar did not answer for."""

CURRENCY: Final = "USD"
PLAN_TTL_S: Final = 60.0
PLAN_CACHE_LIMIT: Final = 4096

_ENTRY_KINDS: Final = (SPAN_KIND_SERVER, SPAN_KIND_CONSUMER)
_LLM_NEEDLE: Final = GEN_AI_USAGE_PREFIX.encode()
_COST_NEEDLE: Final = b"cost."
_EVENT_TRUSTED: Final = ("trusted", "upstream")
_EVENT_FACTS_STALE: Final = ("node_facts", "stale")
_EVENT_FACTS_MISSING: Final = ("node_facts", "missing")
_BAD_OUTCOME: Final[tuple[dict[str, AttributeValue], tuple[str, str]]] = (
    {COST_UNPRICED_REASON: "bad_attribute"},
    ("unpriced", "bad_attribute"),
)
_COST_OUTCOME: Final[tuple[dict[str, AttributeValue], tuple[str, str]]] = (
    {COST_UNPRICED_REASON: "implausible_cost"},
    ("unpriced", "implausible_cost"),
)
_TOKENS_OUTCOME: Final[tuple[dict[str, AttributeValue], tuple[str, str]]] = (
    {COST_UNPRICED_REASON: "implausible_tokens"},
    ("unpriced", "implausible_tokens"),
)
_DURATION_OUTCOME: Final[tuple[dict[str, AttributeValue], tuple[str, str]]] = (
    {COST_UNPRICED_REASON: "implausible_duration"},
    ("unpriced", "implausible_duration"),
)

Outcome = tuple[dict[str, AttributeValue], tuple[str, str]]
"""The attributes a span ends with, and the (event, reason) it is counted under."""
_Override = tuple[int, tuple[str, ...], dict[str, AttributeValue], tuple[str, str]]


@dataclass(slots=True)
class _Plan:
    """How the spans of one resource are priced, unless their own attributes say otherwise."""

    values: dict[str, Value]
    base: dict[str, AttributeValue]  # a span with no charge of its own
    base_event: tuple[str, str]
    segment: SegmentPricing | None  # charged on local roots (or every span)
    every_span: bool
    is_lambda: bool
    rule: Rule | None
    needles: tuple[bytes, ...]
    variants: dict[str, _Plan] = field(default_factory=dict)
    facts_origin: str | None = None  # where node facts came from (node_facts)
    facts_expected: bool = False  # node_facts is configured for this resource
    pod_share: float | None = None  # the share of the node its pod reserves (node_facts)


class CostPlugin(AnnotatingPlugin):
    """Prices every span (see the module docstring and the README)."""

    def __init__(
        self, config: Mapping[str, Any], *, node_facts: NodeFactsSource | None = None
    ) -> None:
        """`node_facts`: a source to use instead of one the config's ``node_facts`` makes
        (which then must be absent); the plugin closes it."""
        settings = parse(CostSettings, config)
        self._minimum = settings.minimum_charge_usd
        limits = settings.limits
        self._max_usd, self._max_tokens = limits.max_span_usd, limits.max_tokens
        self._max_duration_ns = round(limits.max_duration * 1e9)
        self._trust_upstream = settings.trust_upstream
        self._spot_attribute = settings.spot.attribute.strip()
        self._spot_values = frozenset(v.strip().casefold() for v in settings.spot.values)
        spot_discount = settings.spot.discount
        fargate_tasks = {
            service.strip(): FargateTask(task.vcpu, task.memory_gb, _arch(task.arch))
            for service, task in settings.fargate.services.items()
        }
        lambda_memory_unit = cast(MemoryUnit, settings.lambda_.max_memory_unit)
        self._rules = rules_of(settings.rules)
        # A span without a start time is priced at the time it is priced.
        now = partial(datetime.now, UTC)
        self._llm = LlmPricer(clock=now) if settings.llm.enabled else None
        # Last: a source may start a background thread.
        self._book: PriceBook = build_price_book(config.get("prices", {}))
        self._facts = node_facts
        if settings.node_facts is not None:
            if node_facts is not None:
                raise ConfigError("node_facts", "given twice")
            try:
                self._facts = NodeFactsSource.from_config(settings.node_facts)
            except BaseException:
                self._book.close()
                raise
        self._facts_version = self._facts.version if self._facts is not None else ()
        self._settings = ComputeSettings(
            spot_discount=spot_discount,
            fargate_tasks=fargate_tasks,
            lambda_memory_unit=lambda_memory_unit,
            default_operating_system=self._book.default_operating_system,
        )

        rule_keys = frozenset(key for rule in self._rules for key in rule.keys)
        self._resource_keys = RESOURCE_KEYS | rule_keys | {self._spot_attribute, K8S_POD_UID}
        span_keys = set(rule_keys) | {FAAS_TRIGGER}
        needles: list[bytes] = []
        if self._llm is not None:
            span_keys |= LLM_KEYS
            needles.append(_LLM_NEEDLE)
        if self._trust_upstream:
            span_keys.add(COST_USD)
            needles.append(COST_USD.encode())
        self._span_keys = frozenset(span_keys)
        self._needles = tuple(needles)
        self.ownership = Ownership(
            keys=COST_KEYS,
            unprocessed={COST_UNPRICED_REASON: REASON_SIDECAR_UNAVAILABLE},
            unprocessed_event=("unpriced", REASON_SIDECAR_UNAVAILABLE),
            trusted_key=COST_USD if self._trust_upstream else "",
        )
        self._plans: dict[bytes, _Plan] = {}
        self._plans_expire = time.monotonic() + PLAN_TTL_S
        self._force_detailed = False  # tests: read every span's attributes
        logger.info(
            "spancost.cost: sources %s, %d rules, llm %s, trust_upstream %s",
            ", ".join(self._book.names) or "none",
            len(self._rules),
            "on" if self._llm is not None else "off",
            self._trust_upstream,
        )

    def close(self) -> None:
        if self._facts is not None:
            self._facts.close()
        self._book.close()

    # -- the hot path ---------------------------------------------------------------

    def annotate(self, batch: ExportTraceServiceRequest, changes: Changes, events: Events) -> None:
        """Record every span's price in `changes` and count it in `events`."""
        self._annotate(batch, None, changes, events)

    def annotate_wire(
        self, data: bytes, batch: ExportTraceServiceRequest, changes: Changes, events: Events
    ) -> None:
        """`annotate`, searching the received bytes instead of serializing each scope again."""
        self._annotate(batch, scope_blobs(data), changes, events)

    def _annotate(
        self,
        batch: ExportTraceServiceRequest,
        blobs: list[list[bytes]] | None,
        changes: Changes,
        events: Events,
    ) -> None:
        now = time.monotonic()
        if now > self._plans_expire:  # live prices may have changed
            self._plans = {}
            self._plans_expire = now + PLAN_TTL_S
        facts = self._facts
        stale = False
        if facts is not None:
            if facts.version != self._facts_version:  # a node relabelled, say
                self._plans = {}
                self._facts_version = facts.version
            stale = facts.stale
        counts: dict[tuple[str, str], int] = {}
        start = 0
        resources = batch.resource_spans
        if blobs is not None and len(blobs) != len(resources):
            blobs = None  # never expected: the bytes are what `batch` was parsed from
        for number, resource_spans in enumerate(resources):
            scopes = None
            if blobs is not None and len(blobs[number]) == len(resource_spans.scope_spans):
                scopes = blobs[number]
            start = self._annotate_resource(
                resource_spans, start, changes, counts, scopes, stale=stale
            )
        for (event, reason), spans in counts.items():
            events.add(event, reason, spans)

    def _annotate_resource(
        self,
        resource_spans: ResourceSpans,
        start: int,
        changes: Changes,
        counts: dict[tuple[str, str], int],
        scope_blobs: list[bytes] | None = None,
        *,
        stale: bool = False,
    ) -> int:
        """Price the spans of one resource; `stale`: node facts could not be confirmed."""
        plan: _Plan | None = None
        has_cost = False
        overrides: list[_Override] = []
        roots: list[tuple[int, float]] = []  # charged local roots: (span index, cost.usd)
        trusted: list[int] = []
        index = start
        for number, scope_spans in enumerate(resource_spans.scope_spans):
            spans = scope_spans.spans
            if not spans:
                continue
            if plan is None:
                plan = self._plan(resource_spans)
            # The serialized scope holds every attribute key of its spans: searching its
            # bytes (in C) finds the few spans worth reading attribute by attribute.
            # The bytes the sidecar received, when given, spare serializing it again.
            blob = (
                scope_blobs[number] if scope_blobs is not None else scope_spans.SerializeToString()
            )
            if _COST_NEEDLE in blob:
                has_cost = True
            hits = None if self._force_detailed else spans_containing(blob, plan.needles)
            if hits is None:
                hits = set(range(len(spans)))
            if hits:
                self._detailed(
                    plan, spans, index, offsets=sorted(hits), overrides=overrides, trusted=trusted
                )
            if plan.segment is not None and len(hits) < len(spans):
                self._fast(
                    plan, plan.segment, spans, index, overrides=overrides, roots=roots, skip=hits
                )
            index += len(spans)
        if plan is not None:
            _emit(
                plan,
                start=start,
                end=index,
                has_cost=has_cost,
                overrides=overrides,
                roots=roots,
                trusted=trusted,
                changes=changes,
                counts=counts,
            )
            if plan.facts_expected:
                _count_facts(plan, index - start, stale, counts)
        return index

    def _fast(
        self,
        plan: _Plan,
        segment: SegmentPricing,
        spans: Iterable[Span],
        index: int,
        *,
        overrides: list[_Override],
        roots: list[tuple[int, float]],
        skip: set[int],
    ) -> None:
        """Charge the local roots (into `roots`); the other spans keep the plan's base.

        Spans at offsets in `skip` were decided from their own attributes.
        Inlines `is_local_root` and `span_duration_ns` (tests check they agree).
        """
        every_span = plan.every_span
        minimum = self._minimum
        charge = segment.charge
        append = overrides.append
        append_root = roots.append
        has_is_remote = FLAG_CONTEXT_HAS_IS_REMOTE
        is_remote = FLAG_CONTEXT_IS_REMOTE
        entry_kinds = _ENTRY_KINDS
        max_duration = self._max_duration_ns
        max_usd = self._max_usd
        bad_duration = MAX_DURATION_NS
        for offset, span in enumerate(spans):
            if skip and offset in skip:
                continue
            if not every_span:
                flags = span.flags
                if flags & has_is_remote:
                    if not flags & is_remote and span.parent_span_id:
                        continue  # the parent is known to be in this process
                elif span.kind not in entry_kinds and span.parent_span_id:
                    continue
            begin = span.start_time_unix_nano
            duration = span.end_time_unix_nano - begin
            if begin <= 0 or duration < 0 or duration > bad_duration:
                append(_override(index + offset, plan.base, _BAD_OUTCOME))
                continue
            if duration > max_duration:
                append(_override(index + offset, plan.base, _DURATION_OUTCOME))
                continue
            usd = max(charge(duration), minimum)
            if usd <= max_usd:
                append_root((index + offset, usd))
            else:
                append(_override(index + offset, plan.base, _COST_OUTCOME))

    def _detailed(
        self,
        plan: _Plan,
        spans: Sequence[Span],
        index: int,
        *,
        offsets: list[int],
        overrides: list[_Override],
        trusted: list[int],
    ) -> None:
        """Decide the spans at `offsets` (ascending) from their own attributes."""
        wanted = self._span_keys
        for offset in offsets:
            span = spans[offset]
            values = read_values(span.attributes, wanted)
            outcome = self._decide(plan, values, span)
            if outcome is None:
                trusted.append(index + offset)
            elif outcome[0] is not plan.base:
                overrides.append(_override(index + offset, plan.base, outcome))

    def _decide(  # noqa: PLR0911 - one return per step of the pricing order
        self, plan: _Plan, values: dict[str, Value], span: Span
    ) -> Outcome | None:
        """A span's outcome; None to leave it untouched (a trusted upstream price)."""
        if self._trust_upstream and _is_upstream_price(values.get(COST_USD)):
            return None
        resource = plan.values
        rule = plan.rule
        if self._rules and values:
            rule = first_match(self._rules, lambda key: values.get(key, resource.get(key)))
        if rule is not None and not rule.is_segment_rule:
            if rule.per_unit_usd is not None:
                return self._unit_outcome(rule, values, resource)
            return self._charge(rule.segment_pricing(), span)
        if self._llm is not None and values:
            usage = token_usage(values)
            if isinstance(usage, Unpriced):
                return _unpriced(usage.reason)
            if usage is not None:
                if usage.input + usage.output > self._max_tokens:
                    return _TOKENS_OUTCOME
                return self._priced(self._llm.price(values, usage, span.start_time_unix_nano))
        segment_plan = plan if rule is plan.rule else self._variant(plan, rule)
        segment = segment_plan.segment
        if segment is None:
            return segment_plan.base, segment_plan.base_event
        root = segment_plan.every_span or is_local_root(
            span.kind, span.flags, bool(span.parent_span_id)
        )
        if not root and segment_plan.is_lambda:
            root = FAAS_TRIGGER in values
        if root:
            return self._charge(segment, span)
        return segment_plan.base, segment_plan.base_event

    # -- plans ----------------------------------------------------------------------

    def _plan(self, resource_spans: ResourceSpans) -> _Plan:
        # Keyed by the resource's bytes: one C call instead of reading its attributes.
        key = resource_spans.resource.SerializeToString()
        plan = self._plans.get(key)
        if plan is None:
            values = read_values(resource_spans.resource.attributes, self._resource_keys)
            origin, expected = self._overlay(values)
            share = None
            if origin == ORIGIN_KUBERNETES and self._facts is not None:
                pod = values.get(K8S_POD_UID)
                share = self._facts.pod_share(pod if isinstance(pod, str) else None)
            rule = first_match(self._rules, values.get) if self._rules else None
            plan = self._make_plan(values, rule, share)
            plan.facts_origin, plan.facts_expected = origin, expected
            plans = self._plans
            if len(plans) >= PLAN_CACHE_LIMIT:
                plans = self._plans = {}
            plans[key] = plan
        return plan

    def _overlay(self, values: dict[str, Value]) -> tuple[str | None, bool]:
        """Put what spancost knows of the resource's node over what the sender wrote.

        Returns where the facts came from (None: nowhere) and whether some were expected.
        """
        if self._facts is None:
            return None, False
        node = values.get(K8S_NODE_NAME)
        overlay = self._facts.overlay(node.strip() or None if isinstance(node, str) else None)
        if overlay is None:
            return None, self._facts.expects_node
        values.update(overlay.values)
        if overlay.spot is not None:
            values[self._spot_attribute] = overlay.spot
        return overlay.origin, True

    def _variant(self, plan: _Plan, rule: Rule | None) -> _Plan:
        """The plan of the same resource under another rule (or none), for one span."""
        name = rule.name if rule is not None else ""
        variant = plan.variants.get(name)
        if variant is None:
            variant = plan.variants[name] = self._make_plan(plan.values, rule, plan.pod_share)
        return variant

    def _make_plan(
        self, values: dict[str, Value], rule: Rule | None, pod_share: float | None = None
    ) -> _Plan:
        """How the resource's spans are priced under `rule` (None: the built-in pricers);
        with `pod_share`, an EC2 segment is charged that share of its node (the pod's
        reserved part, `_pod_share_pricing`)."""
        is_lambda = False
        every_span = False
        segment: SegmentPricing | None = None
        if rule is None:
            facts = ResourceFacts.from_values(values, self._spot_attribute, self._spot_values)
            pricing = plan_compute(facts, self._book, self._settings)
            is_lambda = facts.platform == "aws_lambda"
            if isinstance(pricing, Unpriced):
                base, base_event = _unpriced(pricing.reason)
            else:
                if pod_share is not None and pricing.model.startswith("ec2."):
                    pricing = _pod_share_pricing(pricing, pod_share)
                segment = pricing
                base, base_event = _included(pricing)
        elif rule.per_hour_usd is not None:
            segment = rule.segment_pricing()
            every_span = not rule.local_roots_only
            base, base_event = _included(segment)
        else:
            base, base_event = self._unit_outcome(rule, {}, values)
        triggers = span_triggers(self._rules, rule) if self._rules else frozenset()
        needles = self._needles + tuple(t.encode() for t in sorted(triggers))
        if is_lambda:
            needles += (FAAS_TRIGGER.encode(),)
        return _Plan(
            values=values,
            base=base,
            base_event=base_event,
            segment=segment,
            every_span=every_span,
            is_lambda=is_lambda,
            rule=rule,
            needles=needles,
            pod_share=pod_share,
        )

    # -- outcomes -------------------------------------------------------------------

    def _charge(self, segment: SegmentPricing, span: Span) -> Outcome:
        duration = span_duration_ns(span.start_time_unix_nano, span.end_time_unix_nano)
        if duration is None:
            return _BAD_OUTCOME
        if duration > self._max_duration_ns:
            return _DURATION_OUTCOME
        usd = segment.charge(duration)
        return self._priced(
            Priced(usd, segment.source, segment.model, segment.as_of, segment.instance_type)
        )

    def _unit_outcome(
        self, rule: Rule, values: Mapping[str, Value], resource: Mapping[str, Value]
    ) -> Outcome:
        assert rule.per_unit_usd is not None  # only per-unit rules come here
        units = 1.0
        if rule.unit_attribute is not None:
            raw = values.get(rule.unit_attribute, resource.get(rule.unit_attribute))
            try:
                count = as_count(raw, maximum=MAX_SPAN_USD / max(rule.per_unit_usd, 1e-300))
            except ValueError:
                return _BAD_OUTCOME
            if count is None:
                return _BAD_OUTCOME
            units = count
        usd = rule.per_unit_usd * units
        return self._priced(Priced(usd, rule.source, "rule.usage", rule.as_of))

    def _priced(self, decision: Priced | Unpriced) -> Outcome:
        if isinstance(decision, Unpriced):
            return _unpriced(decision.reason)
        usd = max(decision.usd, self._minimum)
        if not 0.0 <= usd <= MAX_SPAN_USD:  # also refuses NaN
            return _BAD_OUTCOME
        if usd > self._max_usd:
            return _COST_OUTCOME
        attributes: dict[str, AttributeValue] = {
            COST_USD: float(usd),
            COST_CURRENCY: CURRENCY,
            COST_SOURCE: decision.source,
            COST_MODEL: decision.model,
            COST_PRICE_AS_OF: decision.as_of,
        }
        if decision.instance_type:
            attributes[COST_INSTANCE_TYPE] = decision.instance_type
        return attributes, ("priced", decision.source)


def _pod_share_pricing(segment: SegmentPricing, share: float) -> SegmentPricing:
    """An EC2 segment charged its pod's share of the node, not the whole node: the
    span's immediate estimate (``ec2.on_demand.pod_share.duration``); the totals store's
    allocation splits the node's real cost by busy time."""
    return replace(
        segment,
        model=segment.model.removesuffix(".duration") + ".pod_share.duration",
        usd_per_second=segment.usd_per_second * share,
    )


def _included(segment: SegmentPricing) -> Outcome:
    """A span whose compute is charged on its segment's local root."""
    attributes: dict[str, AttributeValue] = {
        COST_USD: 0.0,
        COST_CURRENCY: CURRENCY,
        COST_SOURCE: segment.source,
        COST_MODEL: segment.included_model,
        COST_PRICE_AS_OF: segment.as_of,
    }
    if segment.instance_type:
        attributes[COST_INSTANCE_TYPE] = segment.instance_type
    return attributes, ("priced", segment.source)


def _unpriced(reason: UnpricedReason) -> Outcome:
    return {COST_UNPRICED_REASON: reason}, ("unpriced", reason)


def _is_upstream_price(value: Value | None) -> bool:
    return type(value) is float and math.isfinite(value) and value >= 0


def _count_facts(plan: _Plan, spans: int, stale: bool, counts: dict[tuple[str, str], int]) -> None:
    """Count spans priced from node facts that could not be confirmed lately
    (``node_facts/stale``), or that had none to be priced from (``node_facts/missing``)."""
    if plan.facts_origin is None:
        key: tuple[str, str] | None = _EVENT_FACTS_MISSING
    else:
        key = _EVENT_FACTS_STALE if stale and plan.facts_origin == "kubernetes" else None
    if key is not None:
        counts[key] = counts.get(key, 0) + spans


def _override(index: int, base: Mapping[str, AttributeValue], outcome: Outcome) -> _Override:
    """What to change on span `index`, which the plan's base was set on, to reach `outcome`."""
    attributes, event = outcome
    remove = tuple(key for key in base if key not in attributes)
    changed = {
        key: value
        for key, value in attributes.items()
        if key not in base or type(base[key]) is not type(value) or base[key] != value
    }
    return index, remove, changed, event


def _emit(
    plan: _Plan,
    *,
    start: int,
    end: int,
    has_cost: bool,
    overrides: list[_Override],
    roots: list[tuple[int, float]],
    trusted: list[int],
    changes: Changes,
    counts: dict[tuple[str, str], int],
) -> None:
    """Record one resource's changes: base ranges first, then each span's override."""
    ranges: list[tuple[int, int]] = []
    cursor = start
    for index in trusted:
        if cursor < index:
            ranges.append((cursor, index))
        cursor = index + 1
    if cursor < end:
        ranges.append((cursor, end))
    if has_cost:
        for first, last in ranges:
            changes.remove(first, last, COST_KEYS)
    for first, last in ranges:
        changes.set(first, last, plan.base)
    _emit_overrides(ranges, overrides, changes, counts, roots=roots, segment=plan.segment)
    base_spans = end - start - len(trusted) - len(overrides) - len(roots)
    if base_spans:
        counts[plan.base_event] = counts.get(plan.base_event, 0) + base_spans
    if trusted:
        counts[_EVENT_TRUSTED] = counts.get(_EVENT_TRUSTED, 0) + len(trusted)


def _emit_overrides(
    ranges: Sequence[tuple[int, int]],
    overrides: list[_Override],
    changes: Changes,
    counts: dict[tuple[str, str], int],
    *,
    roots: list[tuple[int, float]],
    segment: SegmentPricing | None,
) -> None:
    """Record the spans that differ from the base, in few messages.

    Spans with the same change (apart from ``cost.usd``) share one
    `Changes.set_spans` per base range, so the change is applied after its
    range's base; each span's ``cost.usd`` goes into one double column.
    `roots` (charged by `_fast`, all with the segment's model) are grouped in bulk.
    """
    starts = [first for first, _ in ranges]
    groups: dict[
        tuple[int, tuple[str, ...], tuple[tuple[str, str, AttributeValue], ...]], list[int]
    ]
    groups = {}
    usd: list[tuple[int, float]] = roots[:]
    if roots and segment is not None:
        event = ("priced", segment.source)
        counts[event] = counts.get(event, 0) + len(roots)
        rest_model: tuple[tuple[str, str, AttributeValue], ...] = (
            (COST_MODEL, "str", segment.model),
        )
        if len(starts) == 1:
            groups[(0, (), rest_model)] = [index for index, _ in roots]
        else:
            for index, _ in roots:
                in_range = bisect.bisect_right(starts, index) - 1
                groups.setdefault((in_range, (), rest_model), []).append(index)
    for index, remove, changed, event in overrides:
        counts[event] = counts.get(event, 0) + 1
        value = changed.get(COST_USD)
        others = changed
        if type(value) is float:
            usd.append((index, value))
            others = {k: v for k, v in changed.items() if k != COST_USD}
        if remove or others:
            # The type is part of the key: False == 0 == 0.0 must not share a group.
            rest = tuple((k, type(v).__name__, v) for k, v in others.items())
            in_range = bisect.bisect_right(starts, index) - 1
            groups.setdefault((in_range, remove, rest), []).append(index)
    for (_, remove, rest), indices in groups.items():
        changes.set_spans(sorted(indices), {k: v for k, _, v in rest}, remove)
    usd.sort()
    changes.set_doubles(COST_USD, [index for index, _ in usd], [value for _, value in usd])


# -- configuration --------------------------------------------------------------------


def _arch(text: str) -> Arch:
    arch = normalize_arch(text)
    assert arch is not None  # the settings checked it
    return arch
