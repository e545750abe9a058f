"""``example.service_tag``: sets one attribute on every span of chosen services.

Configuration::

    services: [checkout, payment]   # values of the resource attribute service.name
    attribute: team                 # the span attribute to set
    value: payments                 # its value (string, boolean, integer or number)

Events: ``tagged`` (reason ``service=<name>``) for every span tagged, and
``skipped`` (reason ``service_name_not_a_string``) for the spans of a resource
whose ``service.name`` is not a string.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from spancost.attributes import INT64_MAX, INT64_MIN, AttributeValue, find_value, set_value
from spancost.plugin import ConfigError, ConfigSection, Events, ExportTraceServiceRequest, Plugin

logger = logging.getLogger(__name__)

SERVICE_NAME_KEY = "service.name"


class ServiceTagPlugin(Plugin):
    """Tags every span of the configured services with one attribute."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        # Validate everything here: the collector reports a ConfigError, with
        # its key, when it starts, before any span flows.
        section = ConfigSection(config)
        section.allow_only("services", "attribute", "value")
        self._services = frozenset(section.get_str_list("services"))
        if not self._services:
            raise ConfigError(section.key("services"), "must name at least one service")
        self._attribute = section.get_str("attribute")
        if not self._attribute:
            raise ConfigError(section.key("attribute"), "must not be empty")
        value = section.get_raw("value")
        if not isinstance(value, str | bool | int | float):
            raise ConfigError(section.key("value"), "must be a string, boolean, integer or number")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ConfigError(section.key("value"), "integer does not fit in 64 bits")
        self._value: AttributeValue = value

    def process(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        # Called concurrently from several threads: only read self here.
        for resource_spans in batch.resource_spans:
            service = find_value(resource_spans.resource.attributes, SERVICE_NAME_KEY)
            if service is None:
                continue
            spans = [span for scope in resource_spans.scope_spans for span in scope.spans]
            if service.WhichOneof("value") != "string_value":
                # Odd input is data, not an error: count it and leave the spans as they are.
                events.add("skipped", reason="service_name_not_a_string", spans=len(spans))
                continue
            if service.string_value not in self._services:
                continue
            for span in spans:
                set_value(span.attributes, self._attribute, self._value)
            # The reason only ever holds configured names: metric cardinality stays bounded.
            events.add("tagged", reason=f"service={service.string_value}", spans=len(spans))
