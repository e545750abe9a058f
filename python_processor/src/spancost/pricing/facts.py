"""What the pricing core needs to know about a resource and a span, as plain values.

The plugin reads OTLP attributes into plain Python values (``str``, ``int``,
``float``, ``bool``; `Unusable` for arrays, maps, bytes and empty values:
`spancost.vocabulary.otlp`) and hands them here; nothing in this module knows
protobuf. The attribute keys are the vocabulary's (`spancost.vocabulary.keys`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from spancost.vocabulary.keys import (
    AWS_ECS_LAUNCHTYPE,
    AWS_ECS_TASK_CPU,
    AWS_ECS_TASK_MEMORY,
    CLOUD_AVAILABILITY_ZONE,
    CLOUD_PLATFORM,
    CLOUD_PROVIDER,
    CLOUD_REGION,
    FAAS_MAX_MEMORY,
    HOST_ARCH,
    HOST_TYPE,
    K8S_NODE_NAME,
    OS_TYPE,
    SERVICE_NAME,
)
from spancost.vocabulary.otlp import Value

__all__ = ["RESOURCE_KEYS", "ResourceFacts", "as_count", "as_text"]

_TEXT_KEYS: Final = (
    CLOUD_PROVIDER,
    CLOUD_PLATFORM,
    CLOUD_REGION,
    CLOUD_AVAILABILITY_ZONE,
    HOST_TYPE,
    HOST_ARCH,
    OS_TYPE,
    AWS_ECS_LAUNCHTYPE,
    SERVICE_NAME,
    K8S_NODE_NAME,
)
"""The resource attributes read as text; the first of the wrong type is ``bad``."""
RESOURCE_KEYS: Final = frozenset(
    (*_TEXT_KEYS, FAAS_MAX_MEMORY, AWS_ECS_TASK_CPU, AWS_ECS_TASK_MEMORY)
)
"""The resource attributes the built-in pricers read (rules and spot add their own)."""


def as_text(value: Value | None) -> str | None:
    """A string attribute, stripped; None if absent or blank. Raises `TypeError` for other types."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(value)
    text = value.strip()
    return text or None


def as_count(value: Value | None, maximum: float) -> float | None:
    """A count attribute (int, or a finite double) in ``[0, maximum]``; None if absent.

    Raises `ValueError` for anything else: strings (``"12"`` is not converted),
    booleans, NaN, infinities, negative numbers and values above `maximum`.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > maximum:
        raise ValueError(value)
    return number


@dataclass(frozen=True, slots=True)
class ResourceFacts:
    """The resource attributes that decide how compute is priced.

    Built from a mapping of attribute name to plain value; ``bad`` names the
    first attribute whose type is wrong (compute pricing then reports
    ``bad_attribute``).
    """

    provider: str | None = None
    platform: str | None = None
    region: str | None = None
    availability_zone: str | None = None
    host_type: str | None = None
    arch: str | None = None
    os_type: str | None = None
    faas_max_memory: float | None = None
    ecs_launchtype: str | None = None
    task_cpu: Value | None = None
    task_memory: Value | None = None
    service_name: str | None = None
    k8s_node_name: str | None = None
    spot: bool = False
    bad: str | None = None

    @classmethod
    def from_values(
        cls,
        values: Mapping[str, Value],
        spot_attribute: str = "",
        spot_values: frozenset[str] = frozenset(),
    ) -> ResourceFacts:
        """Facts from `values`.

        The resource is spot if `spot_attribute` is true or one of `spot_values`.
        """
        texts: dict[str, str | None] = {}
        bad: str | None = None
        for key in _TEXT_KEYS:
            try:
                texts[key] = as_text(values.get(key))
            except TypeError:
                texts[key] = None
                bad = bad or key
        memory: float | None = None
        try:
            memory = as_count(values.get(FAAS_MAX_MEMORY), maximum=2.0**62)
        except ValueError:
            bad = bad or FAAS_MAX_MEMORY
        region = texts[CLOUD_REGION]
        zone = texts[CLOUD_AVAILABILITY_ZONE]
        if region is None and zone is not None and zone[-1:].isalpha():
            # "us-east-1a" -> "us-east-1": detectors that know the zone know the region.
            region = zone[:-1]
        spot = False
        if spot_attribute:
            marker = values.get(spot_attribute)
            spot = marker is True or (
                isinstance(marker, str) and marker.strip().casefold() in spot_values
            )
        return cls(
            provider=_lower(texts[CLOUD_PROVIDER]),
            platform=_lower(texts[CLOUD_PLATFORM]),
            region=_lower(region),
            availability_zone=_lower(zone),
            host_type=_lower(texts[HOST_TYPE]),
            arch=_lower(texts[HOST_ARCH]),
            os_type=_lower(texts[OS_TYPE]),
            faas_max_memory=memory,
            ecs_launchtype=_lower(texts[AWS_ECS_LAUNCHTYPE]),
            task_cpu=values.get(AWS_ECS_TASK_CPU),
            task_memory=values.get(AWS_ECS_TASK_MEMORY),
            service_name=texts[SERVICE_NAME],
            k8s_node_name=texts[K8S_NODE_NAME],
            spot=spot,
            bad=bad,
        )


def _lower(text: str | None) -> str | None:
    return None if text is None else text.casefold()
