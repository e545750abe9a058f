"""``node_facts`` of ``spancost.cost`` and of the totals sink's ``allocation``: where the
facts that price compute come from (see `spancost.facts.source`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from spancost.config import Choice, ConfigModel, Duration, StrList, default, invalid

__all__ = [
    "DEFAULT_IMDS_ENDPOINT",
    "CapacityLabelSettings",
    "Ec2MetadataSettings",
    "HostMetadataSettings",
    "KubernetesSettings",
    "NodeFactsSettings",
]

AUTH_TYPES = ("serviceAccount", "kubeConfig")
DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"
"""EC2's instance metadata service (IMDSv2)."""


def _node_name(name: str) -> str:
    if not name.strip():
        raise invalid(
            "is empty: set it to the node this agent runs on (the downward API's"
            " spec.nodeName, e.g. ${env:K8S_NODE_NAME}); is the variable set?"
        )
    return name


def _label_key(key: str) -> str:
    if not key.strip():
        raise invalid("must name a node label")
    return key


class CapacityLabelSettings(ConfigModel):
    """A node label of your own telling spot from on-demand."""

    key: Annotated[str, AfterValidator(_label_key)]
    """The label's key."""
    spot_values: StrList = Field(min_length=1)
    """Its values meaning spot (any case)."""
    on_demand_values: StrList = ()
    """Its values meaning on-demand (any case)."""


class KubernetesSettings(ConfigModel):
    """The Node this agent runs on and its pods, watched through the API."""

    node_name: Annotated[str, AfterValidator(_node_name)]
    """The Node's name (the downward API's ``spec.nodeName``)."""
    auth_type: Annotated[
        str, Choice(AUTH_TYPES, message="must be serviceAccount or kubeConfig")
    ] = "serviceAccount"
    """The pod's ServiceAccount token, or ``$KUBECONFIG``."""
    pods: bool = True
    """Also watch the node's pods (requests, limits, owner, lifetime)."""
    capacity_label: CapacityLabelSettings | None = None
    watch_timeout: Duration = default("300s")
    """How long one watch request stays open before it is renewed."""
    sync_timeout: Duration = default("10s")
    """How long start-up waits for the node's first list."""


def _http_endpoint(endpoint: str) -> str:
    if not endpoint.strip().startswith(("http://", "https://")):
        raise invalid(f"must be an http(s) URL, got {endpoint.strip()!r}")
    return endpoint


class HostMetadataSettings(ConfigModel):
    """A metadata endpoint of the instance or task the sidecar runs on."""

    enabled: bool = True
    endpoint: str | None = None
    """Its URL (EC2: ``http://169.254.169.254``; ECS: ``$ECS_CONTAINER_METADATA_URI_V4``)."""
    refresh: Duration = default("1h")
    """How often it is asked again."""
    timeout: Duration = default("1s")
    """Timeout of one request."""


class Ec2MetadataSettings(HostMetadataSettings):
    """The EC2 instance metadata service (IMDSv2)."""

    endpoint: Annotated[str, AfterValidator(_http_endpoint)] = DEFAULT_IMDS_ENDPOINT


class NodeFactsSettings(ConfigModel):
    """What a span ran on, known to spancost; asked in order Kubernetes, ECS, EC2."""

    kubernetes: KubernetesSettings | None = None
    ec2_metadata: Ec2MetadataSettings | None = None
    ecs_metadata: HostMetadataSettings | None = None
