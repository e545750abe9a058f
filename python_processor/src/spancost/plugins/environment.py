"""``spancost.environment``: drops or tags spans by deployment environment.

Where the environment comes from, first one present wins:

1. the resource attribute ``deployment.environment.name``,
2. the resource attribute ``deployment.environment`` (older semantic conventions),
3. the same two keys on the span's own attributes.

An attribute whose value is blank (empty or only whitespace) or unset counts
as absent and the next source is tried. An attribute of another type (int,
bool, array, ...) is not an environment name; it is not converted with ``str``
(``drop: ["1"]`` must not silently match the integer 1). The spans it covers
are kept unchanged, whatever ``missing`` says, and counted as event
``skipped`` with reason ``environment_type=<type>`` (``int``, ``double``,
``bool``, ``bytes``, ``array``, ``kvlist``).

Environment names match case-insensitively after trimming whitespace, in the
data and in the configuration alike.

Configuration keys (all optional):

``drop``
    List of environments whose spans are dropped (event ``dropped``, reason
    ``environment=<env>``).
``tag``
    Mapping of environment → mapping of attribute name → value (string,
    boolean, integer or number) set on every span of that environment,
    overwriting an existing value (event ``tagged``, reason ``environment=<env>``).
    An environment cannot be both dropped and tagged.
``missing``
    What to do with spans that have no environment: ``keep`` (default: pass
    them unchanged, no event), ``drop`` (event ``dropped``, reason
    ``environment_missing``) or any other string: the environment to assume,
    whose ``drop``/``tag`` rules then apply.

Performance: the plugin answers in the fast form (`AnnotatingPlugin`). When
the resource carries the environment (the usual case) the decision is one
span range per ``ResourceSpans``, whatever its size; spans are only visited
when the resource has no environment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

from spancost.attributes import AttributeValue
from spancost.changes import Changes, span_count
from spancost.config import parse
from spancost.plugin import AnnotatingPlugin, Events, ExportTraceServiceRequest
from spancost.settings.environment import MISSING_DROP, MISSING_KEEP, EnvironmentSettings
from spancost.vocabulary import normalize_environment
from spancost.vocabulary.keys import DEPLOYMENT_ENVIRONMENT, DEPLOYMENT_ENVIRONMENT_NAME
from spancost.vocabulary.otlp import value_type

__all__ = ["EnvironmentPlugin"]

logger = logging.getLogger(__name__)


REASON_MISSING: Final = "environment_missing"


@dataclass(frozen=True, slots=True)
class _Rule:
    """What happens to the spans of one environment."""

    drop: bool
    tags: tuple[tuple[str, AttributeValue], ...]
    reason: str

    @property
    def tag_map(self) -> dict[str, AttributeValue]:
        return dict(self.tags)


@dataclass(frozen=True, slots=True)
class _Skip:
    """The environment attribute is present but not a string."""

    reason: str


def _lookup(attributes: Iterable[KeyValue]) -> str | _Skip | None:
    """The normalized environment in `attributes`, a reason to skip, or None (absent)."""
    current = legacy = None
    for attribute in attributes:
        key = attribute.key
        # First occurrence wins, as in the collector's pcommon.Map.
        if key == DEPLOYMENT_ENVIRONMENT_NAME:
            if current is None:
                current = attribute.value
        elif key == DEPLOYMENT_ENVIRONMENT and legacy is None:
            legacy = attribute.value
    for value in (current, legacy):
        if value is None:
            continue
        which = value.WhichOneof("value")
        if which == "string_value":
            name = normalize_environment(value.string_value)
            if name:
                return name
        elif which is not None:
            return _Skip(f"environment_type={value_type(value)}")
    return None


class EnvironmentPlugin(AnnotatingPlugin):
    """Drops or tags spans by deployment environment (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        settings = parse(EnvironmentSettings, config)
        dropped = list(dict.fromkeys(normalize_environment(name) for name in settings.drop))
        self._rules: dict[str, _Rule] = {
            env: _Rule(drop=True, tags=(), reason=f"environment={env}") for env in dropped
        }
        for name, attributes in settings.tag.items():
            env = normalize_environment(name)
            self._rules[env] = _Rule(
                drop=False, tags=tuple(attributes.items()), reason=f"environment={env}"
            )
        self._missing = normalize_environment(settings.missing)
        if self._missing in (MISSING_KEEP, MISSING_DROP):
            self._missing_rule: _Rule | None = (
                _Rule(drop=True, tags=(), reason=REASON_MISSING)
                if self._missing == MISSING_DROP
                else None
            )
        else:
            self._missing_rule = self._rules.get(self._missing)
        self._passthrough = not self._rules and self._missing_rule is None
        if self._passthrough:
            logger.warning(
                "spancost.environment: the configuration drops and tags nothing; "
                "every batch passes unchanged"
            )

    def annotate(self, batch: ExportTraceServiceRequest, changes: Changes, events: Events) -> None:
        """Record which spans to drop or tag (see the module docstring)."""
        if self._passthrough:
            return
        start = 0
        for resource_spans in batch.resource_spans:
            count = span_count(resource_spans)
            end = start + count
            found = _lookup(resource_spans.resource.attributes)
            if found is None:
                self._annotate_spans(resource_spans, start, changes, events)
            elif isinstance(found, _Skip):
                events.add("skipped", found.reason, count)
            else:
                rule = self._rules.get(found)
                if rule is not None:
                    _apply_rule(rule, start, end, changes, events)
            start = end

    def _annotate_spans(
        self, resource_spans: ResourceSpans, start: int, changes: Changes, events: Events
    ) -> None:
        """Decide span by span (the resource carries no environment)."""
        rules = self._rules
        index = start
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found = _lookup(span.attributes)
                rule: _Rule | None
                if found is None:
                    rule = self._missing_rule
                elif isinstance(found, _Skip):
                    events.add("skipped", found.reason)
                    rule = None
                else:
                    rule = rules.get(found)
                if rule is not None:
                    _apply_rule(rule, index, index + 1, changes, events)
                index += 1


def _apply_rule(rule: _Rule, start: int, end: int, changes: Changes, events: Events) -> None:
    if rule.drop:
        changes.drop(start, end)
        events.add("dropped", rule.reason, end - start)
    else:
        changes.set(start, end, rule.tag_map)
        events.add("tagged", rule.reason, end - start)
