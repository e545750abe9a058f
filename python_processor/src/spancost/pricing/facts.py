"""What the pricing core needs to know about a resource and a span, as plain values.

The plugin reads OTLP attributes into plain Python values (``str``, ``int``,
``float``, ``bool``; `Unusable` for arrays, maps, bytes and empty values) and
hands them here; nothing in this module knows protobuf. Attribute names follow
the OpenTelemetry semantic conventions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ATTR_AWS_ECS_LAUNCHTYPE",
    "ATTR_AWS_ECS_TASK_CPU",
    "ATTR_AWS_ECS_TASK_MEMORY",
    "ATTR_CLOUD_AVAILABILITY_ZONE",
    "ATTR_CLOUD_PLATFORM",
    "ATTR_CLOUD_PROVIDER",
    "ATTR_CLOUD_REGION",
    "ATTR_FAAS_MAX_MEMORY",
    "ATTR_FAAS_TRIGGER",
    "ATTR_HOST_ARCH",
    "ATTR_HOST_TYPE",
    "ATTR_K8S_NODE_NAME",
    "ATTR_OS_TYPE",
    "ATTR_SERVICE_NAME",
    "RESOURCE_KEYS",
    "ResourceFacts",
    "Unusable",
    "Value",
    "as_count",
    "as_text",
]

ATTR_CLOUD_PROVIDER: Final = "cloud.provider"
ATTR_CLOUD_PLATFORM: Final = "cloud.platform"
ATTR_CLOUD_REGION: Final = "cloud.region"
ATTR_CLOUD_AVAILABILITY_ZONE: Final = "cloud.availability_zone"
ATTR_HOST_TYPE: Final = "host.type"
ATTR_HOST_ARCH: Final = "host.arch"
ATTR_OS_TYPE: Final = "os.type"
ATTR_FAAS_MAX_MEMORY: Final = "faas.max_memory"
ATTR_FAAS_TRIGGER: Final = "faas.trigger"
ATTR_AWS_ECS_LAUNCHTYPE: Final = "aws.ecs.launchtype"
ATTR_AWS_ECS_TASK_CPU: Final = "aws.ecs.task.cpu"
ATTR_AWS_ECS_TASK_MEMORY: Final = "aws.ecs.task.memory"
ATTR_SERVICE_NAME: Final = "service.name"
ATTR_K8S_NODE_NAME: Final = "k8s.node.name"

RESOURCE_KEYS: Final = frozenset(
    {
        ATTR_CLOUD_PROVIDER,
        ATTR_CLOUD_PLATFORM,
        ATTR_CLOUD_REGION,
        ATTR_CLOUD_AVAILABILITY_ZONE,
        ATTR_HOST_TYPE,
        ATTR_HOST_ARCH,
        ATTR_OS_TYPE,
        ATTR_FAAS_MAX_MEMORY,
        ATTR_AWS_ECS_LAUNCHTYPE,
        ATTR_AWS_ECS_TASK_CPU,
        ATTR_AWS_ECS_TASK_MEMORY,
        ATTR_SERVICE_NAME,
        ATTR_K8S_NODE_NAME,
    }
)
"""The resource attributes the built-in pricers read (rules and spot add their own)."""


@dataclass(frozen=True, slots=True)
class Unusable:
    """A value of a type no pricer reads (``array``, ``kvlist``, ``bytes``, ``empty``)."""

    type_name: str


Value = str | int | float | bool | Unusable
"""A plain attribute value, as the plugin hands it to the core."""


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
        for key in (
            ATTR_CLOUD_PROVIDER,
            ATTR_CLOUD_PLATFORM,
            ATTR_CLOUD_REGION,
            ATTR_CLOUD_AVAILABILITY_ZONE,
            ATTR_HOST_TYPE,
            ATTR_HOST_ARCH,
            ATTR_OS_TYPE,
            ATTR_AWS_ECS_LAUNCHTYPE,
            ATTR_SERVICE_NAME,
            ATTR_K8S_NODE_NAME,
        ):
            try:
                texts[key] = as_text(values.get(key))
            except TypeError:
                texts[key] = None
                bad = bad or key
        memory: float | None = None
        try:
            memory = as_count(values.get(ATTR_FAAS_MAX_MEMORY), maximum=2.0**62)
        except ValueError:
            bad = bad or ATTR_FAAS_MAX_MEMORY
        region = texts[ATTR_CLOUD_REGION]
        zone = texts[ATTR_CLOUD_AVAILABILITY_ZONE]
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
            provider=_lower(texts[ATTR_CLOUD_PROVIDER]),
            platform=_lower(texts[ATTR_CLOUD_PLATFORM]),
            region=_lower(region),
            availability_zone=_lower(zone),
            host_type=_lower(texts[ATTR_HOST_TYPE]),
            arch=_lower(texts[ATTR_HOST_ARCH]),
            os_type=_lower(texts[ATTR_OS_TYPE]),
            faas_max_memory=memory,
            ecs_launchtype=_lower(texts[ATTR_AWS_ECS_LAUNCHTYPE]),
            task_cpu=values.get(ATTR_AWS_ECS_TASK_CPU),
            task_memory=values.get(ATTR_AWS_ECS_TASK_MEMORY),
            service_name=texts[ATTR_SERVICE_NAME],
            k8s_node_name=texts[ATTR_K8S_NODE_NAME],
            spot=spot,
            bad=bad,
        )


def _lower(text: str | None) -> str | None:
    return None if text is None else text.casefold()
