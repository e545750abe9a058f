"""How each span is priced: a plan per resource, an outcome per span, and the changes
that record them.

Pure: a resource's attributes and a span's own as plain values
(`spancost.vocabulary.otlp`), a span's kind, flags and times, and the price book in;
an `Outcome` (the ``cost.*`` attributes the span ends with, and the event it is
counted under) out, and `emit` records a resource's outcomes in `Changes` in few
messages. No clock, no protobuf import: a span is read by its fields. The plugin
(spancost.plugins.cost) does the rest: its configuration, reading the batch, caching
plans, node facts.

How a span is priced, first that applies (python_processor/README.md, "What is priced
and how"):

1. the first user rule that matches it, if that rule prices usage
   (``per_unit_usd``, or ``per_hour_usd`` with ``applies_to: all``);
2. its LLM token usage (``gen_ai.usage.*``), with genai-prices;
3. the compute of its service segment (EC2, Lambda, Fargate, or a ``per_hour_usd``
   rule with ``applies_to: local_roots``): charged on the segment's local root, 0.0
   (``<kind>.included_in_segment``) on the others.

A resource's `Plan` holds what a span with no attribute of its own that matters ends
with (its ``base``) and how local roots are charged (its ``segment``). Most spans take
the base; `SpanPricer.charge_local_roots` charges the local roots from a few field
reads; only spans whose bytes hold one of the plan's ``needles`` are decided from
their own attributes (`SpanPricer.decide`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from spancost.pricing.compute import (
    ComputeSettings,
    SegmentPricing,
    is_local_root,
    plan_compute,
    span_duration_ns,
)
from spancost.pricing.facts import RESOURCE_KEYS, ResourceFacts, as_count
from spancost.pricing.llm import LLM_KEYS, token_usage
from spancost.pricing.model import Priced, Unpriced, UnpricedReason
from spancost.pricing.rules import Rule, first_match, span_triggers
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
)
from spancost.vocabulary.limits import MAX_DURATION_NS, MAX_SPAN_USD, MAX_TOKENS
from spancost.vocabulary.otlp import (
    FLAG_CONTEXT_HAS_IS_REMOTE,
    FLAG_CONTEXT_IS_REMOTE,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_SERVER,
    AttributeValue,
    Value,
)

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from spancost.changes import Changes
    from spancost.pricing.catalog import PriceBook
    from spancost.pricing.llm import LlmPricer

__all__ = [
    "CURRENCY",
    "Outcome",
    "Override",
    "Plan",
    "SpanPricer",
    "emit",
    "override",
]

CURRENCY: Final = "USD"

Outcome = tuple[dict[str, AttributeValue], tuple[str, str]]
"""The attributes a span ends with, and the (event, reason) it is counted under."""
Override = tuple[int, tuple[str, ...], dict[str, AttributeValue], tuple[str, str]]
"""A span that differs from its plan's base: its index, the keys to remove, the
attributes to set, and its (event, reason)."""

_ENTRY_KINDS: Final = (SPAN_KIND_SERVER, SPAN_KIND_CONSUMER)
_LLM_NEEDLE: Final = GEN_AI_USAGE_PREFIX.encode()
_EVENT_TRUSTED: Final = ("trusted", "upstream")


def _unpriced(reason: UnpricedReason) -> Outcome:
    return {COST_UNPRICED_REASON: reason}, ("unpriced", reason)


_BAD_OUTCOME: Final = _unpriced("bad_attribute")
_COST_OUTCOME: Final = _unpriced("implausible_cost")
_TOKENS_OUTCOME: Final = _unpriced("implausible_tokens")
_DURATION_OUTCOME: Final = _unpriced("implausible_duration")


@dataclass(slots=True)
class Plan:
    """How the spans of one resource are priced, unless their own attributes say otherwise."""

    values: dict[str, Value]
    base: dict[str, AttributeValue]  # a span with no charge of its own
    base_event: tuple[str, str]
    segment: SegmentPricing | None  # charged on local roots (or every span)
    every_span: bool
    is_lambda: bool
    rule: Rule | None
    needles: tuple[bytes, ...]
    variants: dict[str, Plan] = field(default_factory=dict)
    facts_origin: str | None = None  # where node facts came from (node_facts)
    facts_expected: bool = False  # node_facts is configured for this resource
    pod_share: float | None = None  # the share of the node its pod reserves (node_facts)


class SpanPricer:
    """Decides the price of every span under one configuration of ``spancost.cost``.

    `resource_keys` and `span_keys` are the attributes it reads of a resource and of a
    span (the caller reads them, `spancost.vocabulary.otlp.read_values`).
    """

    def __init__(
        self,
        book: PriceBook,
        settings: ComputeSettings,
        *,
        rules: Sequence[Rule] = (),
        llm: LlmPricer | None = None,
        minimum_usd: float = 0.0,
        max_usd: float = MAX_SPAN_USD,
        max_tokens: float = MAX_TOKENS,
        max_duration_ns: int = MAX_DURATION_NS,
        trust_upstream: bool = False,
        spot_attribute: str = "",
        spot_values: frozenset[str] = frozenset(),
    ) -> None:
        self._book = book
        self._settings = settings
        self._rules = tuple(rules)
        self._llm = llm
        self._minimum = float(minimum_usd)
        # Within the bounds of bad data (as the settings hold them): changes no decision,
        # and lets charge_local_roots accept the common case with fewer tests.
        self._max_usd = min(max_usd, MAX_SPAN_USD)
        self._max_tokens = max_tokens
        self._max_duration_ns = min(max_duration_ns, MAX_DURATION_NS)
        self._trust_upstream = trust_upstream
        self._spot_attribute = spot_attribute
        self._spot_values = spot_values
        rule_keys = frozenset(key for rule in self._rules for key in rule.keys)
        self.resource_keys: frozenset[str] = RESOURCE_KEYS | rule_keys | {spot_attribute}
        span_keys = set(rule_keys) | {FAAS_TRIGGER}
        needles: list[bytes] = []
        if llm is not None:
            span_keys |= LLM_KEYS
            needles.append(_LLM_NEEDLE)
        if trust_upstream:
            span_keys.add(COST_USD)
            needles.append(COST_USD.encode())
        self.span_keys: frozenset[str] = frozenset(span_keys)
        self._needles = tuple(needles)

    # -- plans ----------------------------------------------------------------------

    def plan(self, values: dict[str, Value], pod_share: float | None = None) -> Plan:
        """How the spans of a resource with attributes `values` are priced; with
        `pod_share`, an EC2 segment is charged that share of its node (the pod's
        reserved part, `_pod_share_pricing`)."""
        rule = first_match(self._rules, values.get) if self._rules else None
        return self._plan(values, rule, pod_share)

    def variant(self, plan: Plan, rule: Rule | None) -> Plan:
        """The plan of the same resource under another rule (or none), for one span."""
        name = rule.name if rule is not None else ""
        variant = plan.variants.get(name)
        if variant is None:
            variant = plan.variants[name] = self._plan(plan.values, rule, plan.pod_share)
        return variant

    def _plan(
        self, values: dict[str, Value], rule: Rule | None, pod_share: float | None = None
    ) -> Plan:
        """How the resource's spans are priced under `rule` (None: the built-in pricers)."""
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
        return Plan(
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

    # -- spans ----------------------------------------------------------------------

    def decide(  # noqa: PLR0911 - one return per step of the pricing order
        self, plan: Plan, values: dict[str, Value], span: Span
    ) -> Outcome | None:
        """A span's outcome from its own attributes `values` (`span_keys`); None to leave
        it untouched (a trusted upstream price)."""
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
        segment_plan = plan if rule is plan.rule else self.variant(plan, rule)
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

    def charge_local_roots(
        self,
        plan: Plan,
        segment: SegmentPricing,
        spans: Iterable[Span],
        index: int,
        *,
        overrides: list[Override],
        roots: list[tuple[int, float]],
        skip: set[int],
    ) -> None:
        """Charge the local roots of `spans` (the first at `index`) into `roots`; the other
        spans keep the plan's base. Spans at offsets in `skip` were decided by `decide`.

        The hot path, so two decisions are inlined, each checked against its one
        definition by tests: `is_local_root` (calling it made bench_cost_plugin 5 to 7 %
        slower), and the common case of `_charge_usd`, a plausible time and price (a call
        per local root cost 1 to 2 % more instructions with node facts). Any other local
        root is decided by `_charge_usd` itself, as `decide` does.
        """
        every_span = plan.every_span
        base = plan.base
        charge = segment.charge
        charge_usd = self._charge_usd
        minimum = self._minimum
        max_usd = self._max_usd
        max_duration = self._max_duration_ns
        append = overrides.append
        append_root = roots.append
        has_is_remote = FLAG_CONTEXT_HAS_IS_REMOTE
        is_remote = FLAG_CONTEXT_IS_REMOTE
        entry_kinds = _ENTRY_KINDS
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
            end = span.end_time_unix_nano
            duration = end - begin
            if begin > 0 and 0 <= duration <= max_duration:
                usd = max(charge(duration), minimum)
                if 0.0 <= usd <= max_usd:
                    append_root((index + offset, usd))
                    continue
            decided = charge_usd(segment, begin, end)
            if isinstance(decided, float):
                append_root((index + offset, decided))
            else:
                append(override(index + offset, base, decided))

    # -- outcomes -------------------------------------------------------------------

    def _charge(self, segment: SegmentPricing, span: Span) -> Outcome:
        """A charged span's outcome: its segment's model, or why it is refused."""
        usd = self._charge_usd(segment, span.start_time_unix_nano, span.end_time_unix_nano)
        if isinstance(usd, tuple):
            return usd
        return _priced_outcome(
            usd, segment.source, segment.model, segment.as_of, segment.instance_type
        )

    def _charge_usd(self, segment: SegmentPricing, start_ns: int, end_ns: int) -> float | Outcome:
        """What a span from `start_ns` to `end_ns` charged `segment` costs, or the outcome
        that refuses it (bad times, too long, implausible cost). The one computation of a
        compute charge, for `decide` and `charge_local_roots` alike."""
        duration = span_duration_ns(start_ns, end_ns)
        if duration is None:
            return _BAD_OUTCOME
        if duration > self._max_duration_ns:
            return _DURATION_OUTCOME
        return self._plausible(segment.charge(duration))

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
        usd = self._plausible(decision.usd)
        if isinstance(usd, tuple):
            return usd
        return _priced_outcome(
            usd, decision.source, decision.model, decision.as_of, decision.instance_type
        )

    def _plausible(self, usd: float) -> float | Outcome:
        """`usd` raised to the minimum charge, or the outcome that refuses it."""
        usd = float(max(usd, self._minimum))
        if not 0.0 <= usd <= MAX_SPAN_USD:  # also refuses NaN
            return _BAD_OUTCOME
        if usd > self._max_usd:
            return _COST_OUTCOME
        return usd


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
    return _priced_outcome(
        0.0, segment.source, segment.included_model, segment.as_of, segment.instance_type
    )


def _priced_outcome(usd: float, source: str, model: str, as_of: str, instance_type: str) -> Outcome:
    attributes: dict[str, AttributeValue] = {
        COST_USD: usd,
        COST_CURRENCY: CURRENCY,
        COST_SOURCE: source,
        COST_MODEL: model,
        COST_PRICE_AS_OF: as_of,
    }
    if instance_type:  # compute only
        attributes[COST_INSTANCE_TYPE] = instance_type
    return attributes, ("priced", source)


def _is_upstream_price(value: Value | None) -> bool:
    return type(value) is float and math.isfinite(value) and value >= 0


# -- changes ----------------------------------------------------------------------------


def override(index: int, base: Mapping[str, AttributeValue], outcome: Outcome) -> Override:
    """What to change on span `index`, which the plan's base was set on, to reach `outcome`."""
    attributes, event = outcome
    remove = tuple(key for key in base if key not in attributes)
    changed = {
        key: value
        for key, value in attributes.items()
        if key not in base or type(base[key]) is not type(value) or base[key] != value
    }
    return index, remove, changed, event


def emit(
    plan: Plan,
    *,
    start: int,
    end: int,
    has_cost: bool,
    overrides: list[Override],
    roots: list[tuple[int, float]],
    trusted: list[int],
    changes: Changes,
    counts: dict[tuple[str, str], int],
) -> None:
    """Record one resource's changes (spans `start` to `end`): base ranges first, then each
    span's override; count them in `counts`. `has_cost`: some span may carry ``cost.*``
    attributes of its own, which are removed first."""
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
    overrides: list[Override],
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
    `roots` (charged by `SpanPricer.charge_local_roots`, all with the segment's
    model) are grouped in bulk.
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
