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

How a span is priced (rules, LLM tokens, the compute of its service segment) is
decided in `spancost.pricing.decision`; this module is the plugin: its configuration
turned into the objects that price, and the batch read and its changes recorded. See
the README section "What is priced and how" for the formulas.

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
attribute, ...: `spancost.wire_scan`). Otherwise each span costs a few field reads,
and only local roots get an attribute change of their own: the rest share one range.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, cast

from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from spancost.changes import Changes
from spancost.config import parse
from spancost.errors import ConfigError
from spancost.facts.source import ORIGIN_KUBERNETES, NodeFactsSource
from spancost.plugin import AnnotatingPlugin, Events, ExportTraceServiceRequest, Ownership
from spancost.pricing.catalog import PriceBook, build_price_book
from spancost.pricing.compute import ComputeSettings, FargateTask, MemoryUnit, normalize_arch
from spancost.pricing.decision import Override, Plan, SpanPricer, emit, override
from spancost.pricing.llm import LlmPricer
from spancost.pricing.model import Arch
from spancost.pricing.rules import rules_of
from spancost.settings.cost import CostSettings
from spancost.vocabulary.keys import (
    COST_KEYS,
    COST_PREFIX,
    COST_UNPRICED_REASON,
    COST_USD,
    K8S_NODE_NAME,
    K8S_POD_UID,
)
from spancost.vocabulary.otlp import Value, read_values
from spancost.wire_scan import scope_blobs, spans_containing

__all__ = ["REASON_SIDECAR_UNAVAILABLE", "CostPlugin"]

logger = logging.getLogger(__name__)

REASON_SIDECAR_UNAVAILABLE: Final = "sidecar_unavailable"
"""Written by the collector on a span whose batch the sidecar did not answer for."""

PLAN_TTL_S: Final = 60.0
PLAN_CACHE_LIMIT: Final = 4096

_COST_NEEDLE: Final = COST_PREFIX.encode()
_EVENT_FACTS_STALE: Final = ("node_facts", "stale")
_EVENT_FACTS_MISSING: Final = ("node_facts", "missing")


class CostPlugin(AnnotatingPlugin):
    """Prices every span (see the module docstring and the README)."""

    def __init__(
        self, config: Mapping[str, Any], *, node_facts: NodeFactsSource | None = None
    ) -> None:
        """`node_facts`: a source to use instead of one the config's ``node_facts`` makes
        (which then must be absent); the plugin closes it."""
        settings = parse(CostSettings, config)
        limits = settings.limits
        self._spot_attribute = settings.spot.attribute.strip()
        fargate_tasks = {
            service.strip(): FargateTask(task.vcpu, task.memory_gb, _arch(task.arch))
            for service, task in settings.fargate.services.items()
        }
        rules = rules_of(settings.rules)
        # A span without a start time is priced at the time it is priced.
        now = partial(datetime.now, UTC)
        # genai-prices and its data load on the first span priced by tokens (issue 15).
        llm = LlmPricer(clock=now) if settings.llm.enabled else None
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
        compute = ComputeSettings(
            spot_discount=settings.spot.discount,
            fargate_tasks=fargate_tasks,
            lambda_memory_unit=cast(MemoryUnit, settings.lambda_.max_memory_unit),
            default_operating_system=self._book.default_operating_system,
        )
        self._pricer = SpanPricer(
            self._book,
            compute,
            rules=rules,
            llm=llm,
            minimum_usd=settings.minimum_charge_usd,
            max_usd=limits.max_span_usd,
            max_tokens=limits.max_tokens,
            max_duration_ns=round(limits.max_duration * 1e9),
            trust_upstream=settings.trust_upstream,
            spot_attribute=self._spot_attribute,
            spot_values=frozenset(v.strip().casefold() for v in settings.spot.values),
        )
        self._resource_keys = self._pricer.resource_keys | {K8S_POD_UID}
        self._span_keys = self._pricer.span_keys
        self.ownership = Ownership(
            keys=COST_KEYS,
            unprocessed={COST_UNPRICED_REASON: REASON_SIDECAR_UNAVAILABLE},
            unprocessed_event=("unpriced", REASON_SIDECAR_UNAVAILABLE),
            trusted_key=COST_USD if settings.trust_upstream else "",
        )
        self._plans: dict[bytes, Plan] = {}
        self._plans_expire = time.monotonic() + PLAN_TTL_S
        self._force_detailed = False  # tests: read every span's attributes
        logger.info(
            "spancost.cost: sources %s, %d rules, llm %s, trust_upstream %s",
            ", ".join(self._book.names) or "none",
            len(rules),
            "on" if llm is not None else "off",
            settings.trust_upstream,
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
        plan: Plan | None = None
        has_cost = False
        overrides: list[Override] = []
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
                self._pricer.charge_local_roots(
                    plan, plan.segment, spans, index, overrides=overrides, roots=roots, skip=hits
                )
            index += len(spans)
        if plan is not None:
            emit(
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

    def _detailed(
        self,
        plan: Plan,
        spans: Sequence[Span],
        index: int,
        *,
        offsets: list[int],
        overrides: list[Override],
        trusted: list[int],
    ) -> None:
        """Decide the spans at `offsets` (ascending) from their own attributes."""
        wanted = self._span_keys
        decide = self._pricer.decide
        for offset in offsets:
            span = spans[offset]
            outcome = decide(plan, read_values(span.attributes, wanted), span)
            if outcome is None:
                trusted.append(index + offset)
            elif outcome[0] is not plan.base:
                overrides.append(override(index + offset, plan.base, outcome))

    # -- plans ----------------------------------------------------------------------

    def _plan(self, resource_spans: ResourceSpans) -> Plan:
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
            plan = self._pricer.plan(values, share)
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


def _count_facts(plan: Plan, spans: int, stale: bool, counts: dict[tuple[str, str], int]) -> None:
    """Count spans priced from node facts that could not be confirmed lately
    (``node_facts/stale``), or that had none to be priced from (``node_facts/missing``)."""
    if plan.facts_origin is None:
        key: tuple[str, str] | None = _EVENT_FACTS_MISSING
    else:
        key = _EVENT_FACTS_STALE if stale and plan.facts_origin == "kubernetes" else None
    if key is not None:
        counts[key] = counts.get(key, 0) + spans


# -- configuration --------------------------------------------------------------------


def _arch(text: str) -> Arch:
    arch = normalize_arch(text)
    assert arch is not None  # the settings checked it
    return arch
