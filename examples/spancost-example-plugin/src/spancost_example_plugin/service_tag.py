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

from pydantic import Field
from spancost.attributes import find_value, set_value
from spancost.plugin import (
    AttributeSetting,
    ConfigModel,
    Events,
    ExportTraceServiceRequest,
    Name,
    Plugin,
    StrList,
    parse,
)

logger = logging.getLogger(__name__)

SERVICE_NAME_KEY = "service.name"


class ServiceTagSettings(ConfigModel):
    """The plugin's configuration: every key, its type and its checks."""

    services: StrList = Field(min_length=1)
    """Values of the resource attribute service.name."""
    attribute: Name
    """The span attribute to set."""
    value: AttributeSetting
    """Its value (string, boolean, integer or number)."""


class ServiceTagPlugin(Plugin):
    """Tags every span of the configured services with one attribute."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        # Validate everything here: the collector reports a ConfigError, with
        # its key, when it starts, before any span flows.
        settings = parse(ServiceTagSettings, config)
        self._services = frozenset(settings.services)
        self._attribute = settings.attribute
        self._value = settings.value

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
