"""What a node and a pod tell about cost, read from Kubernetes API objects (pure).

Input is the API's own JSON shape (``dict`` as ``kubectl get -o json`` prints it,
camelCase keys); nothing here talks to a server, so every rule is unit-tested.

Node facts come from the well-known labels, the label's deprecated ``beta``
spelling as a fallback (older clusters and some installers still set only those),
then the kubelet's ``status.nodeInfo`` for the OS and architecture. The capacity
type (on-demand or spot) comes from the first label that says, in this order: the
configured label, ``eks.amazonaws.com/capacityType`` (EKS managed node groups),
``karpenter.sh/capacity-type`` (Karpenter; ``reserved``, a capacity reservation,
is billed at the on-demand rate), ``lifecycle`` (eksctl: ``Ec2Spot``),
``node.kubernetes.io/lifecycle`` (kops: ``spot``), and the GKE and AKS spot
labels. The cloud comes from ``spec.providerID`` (``aws:///us-east-1a/i-...``).

Pod facts are what splitting a node's cost between its pods needs: effective CPU
and memory requests and limits (the scheduler's rule: the larger of the
containers' sum and the largest init container, sidecar init containers added to
both, plus ``spec.overhead``), the owning workload (a ReplicaSet with a
``pod-template-hash`` label is its Deployment's), namespace, labels, and when the
pod started and ended on the node.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "CAPACITY_LABELS",
    "Capacity",
    "CapacityLabel",
    "NodeFacts",
    "PodFacts",
    "Resources",
    "folded",
    "node_facts",
    "pod_facts",
    "stripped",
]

Capacity = Literal["on_demand", "spot"]

LABEL_INSTANCE_TYPE: Final = (
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
)
LABEL_REGION: Final = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
LABEL_ZONE: Final = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
LABEL_OS: Final = ("kubernetes.io/os", "beta.kubernetes.io/os")
LABEL_ARCH: Final = ("kubernetes.io/arch", "beta.kubernetes.io/arch")

PROVIDERS: Final = {"aws": "aws", "gce": "gcp", "azure": "azure"}
"""``spec.providerID`` scheme → ``cloud.provider``."""


@dataclass(frozen=True, slots=True)
class CapacityLabel:
    """A node label that tells the capacity type: spot when its value (case-folded) is in
    `spot`, on-demand when in `on_demand`; any other value does not decide."""

    key: str
    spot: frozenset[str]
    on_demand: frozenset[str]


CAPACITY_LABELS: Final = (
    CapacityLabel("eks.amazonaws.com/capacityType", frozenset({"spot"}), frozenset({"on_demand"})),
    CapacityLabel(
        "karpenter.sh/capacity-type", frozenset({"spot"}), frozenset({"on-demand", "reserved"})
    ),
    CapacityLabel("lifecycle", frozenset({"ec2spot", "spot"}), frozenset({"ondemand"})),
    CapacityLabel("node.kubernetes.io/lifecycle", frozenset({"spot"}), frozenset({"normal"})),
    CapacityLabel("cloud.google.com/gke-spot", frozenset({"true"}), frozenset()),
    CapacityLabel("cloud.google.com/gke-preemptible", frozenset({"true"}), frozenset()),
    CapacityLabel("kubernetes.azure.com/scalesetpriority", frozenset({"spot"}), frozenset()),
)
"""The well-known capacity-type labels, in the order they are asked."""


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU (cores) and memory (bytes); None where not set (a limit no container sets)."""

    cpu: float | None = None
    memory: int | None = None


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """One Node, as pricing sees it. ``capacity_from`` names the label that decided
    ``capacity`` (None: no label did; the node is priced on-demand); ``created`` is
    when the Node object was created (about when the instance joined)."""

    name: str
    uid: str = ""
    provider: str | None = None
    instance_type: str | None = None
    region: str | None = None
    zone: str | None = None
    os: str | None = None
    arch: str | None = None
    capacity: Capacity | None = None
    capacity_from: str | None = None
    allocatable: Resources = Resources()
    capacity_total: Resources = Resources()
    resource_version: str = ""
    created: dt.datetime | None = None

    @property
    def spot(self) -> bool:
        return self.capacity == "spot"


@dataclass(frozen=True, slots=True)
class PodFacts:
    """One Pod on the node. ``end`` is set once the pod stopped running (it finished,
    or it was deleted); `started` is ``status.startTime``."""

    uid: str
    namespace: str
    name: str
    node: str | None
    workload_kind: str | None
    workload_name: str | None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    requests: Resources = Resources()
    limits: Resources = Resources()
    phase: str | None = None
    started: dt.datetime | None = None
    end: dt.datetime | None = None
    resource_version: str = ""


# -- nodes --------------------------------------------------------------------------


def node_facts(node: Mapping[str, Any], capacity_label: CapacityLabel | None = None) -> NodeFacts:
    """The facts of a Node object (the API's JSON shape)."""
    metadata = _mapping(node.get("metadata"))
    spec = _mapping(node.get("spec"))
    status = _mapping(node.get("status"))
    labels = _labels(metadata)
    info = _mapping(status.get("nodeInfo"))
    capacity, decided_by = _capacity(labels, capacity_label)
    return NodeFacts(
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        provider=_provider(spec.get("providerID"), labels),
        instance_type=_label(labels, LABEL_INSTANCE_TYPE),
        region=_label(labels, LABEL_REGION),
        zone=_label(labels, LABEL_ZONE),
        os=folded(_label(labels, LABEL_OS) or stripped(info.get("operatingSystem"))),
        arch=folded(_label(labels, LABEL_ARCH) or stripped(info.get("architecture"))),
        capacity=capacity,
        capacity_from=decided_by,
        allocatable=_resources(_mapping(status.get("allocatable"))),
        capacity_total=_resources(_mapping(status.get("capacity"))),
        resource_version=str(metadata.get("resourceVersion") or ""),
        created=_time(metadata.get("creationTimestamp")),
    )


def _capacity(
    labels: Mapping[str, str], configured: CapacityLabel | None
) -> tuple[Capacity | None, str | None]:
    ordered: Iterable[CapacityLabel] = CAPACITY_LABELS
    if configured is not None:
        ordered = (configured, *CAPACITY_LABELS)
    for label in ordered:
        value = labels.get(label.key)
        if value is None:
            continue
        folded = value.strip().casefold()
        if folded in label.spot:
            return "spot", label.key
        if folded in label.on_demand:
            return "on_demand", label.key
    return None, None


def _provider(provider_id: object, labels: Mapping[str, str]) -> str | None:
    if isinstance(provider_id, str) and "://" in provider_id:
        scheme = provider_id.split("://", 1)[0].casefold()
        if scheme in PROVIDERS:
            return PROVIDERS[scheme]
    if any(key.startswith(("eks.amazonaws.com/", "karpenter.k8s.aws/")) for key in labels):
        return "aws"
    return None


# -- pods ---------------------------------------------------------------------------


def pod_facts(pod: Mapping[str, Any], *, deleted_at: dt.datetime | None = None) -> PodFacts:
    """The facts of a Pod object; `deleted_at` is when a watch saw it deleted."""
    metadata = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    status = _mapping(pod.get("status"))
    kind, name = _workload(metadata)
    phase = stripped(status.get("phase"))
    end = _finished(status) if phase in ("Succeeded", "Failed") else None
    if deleted_at is not None and end is None:
        end = deleted_at
    return PodFacts(
        uid=str(metadata.get("uid") or ""),
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        node=stripped(spec.get("nodeName")),
        workload_kind=kind,
        workload_name=name,
        labels=MappingProxyType(dict(_labels(metadata))),
        requests=_pod_resources(spec, "requests"),
        limits=_pod_resources(spec, "limits"),
        phase=phase,
        started=_time(status.get("startTime")),
        end=end,
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def _workload(metadata: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The controller that owns the pod; a ReplicaSet made by a Deployment is named
    ``<deployment>-<pod-template-hash>``, so its Deployment is known without reading it."""
    for reference in metadata.get("ownerReferences") or ():
        if not isinstance(reference, Mapping) or not reference.get("controller"):
            continue
        kind, name = stripped(reference.get("kind")), stripped(reference.get("name"))
        if kind == "ReplicaSet" and name is not None:
            template_hash = _labels(metadata).get("pod-template-hash")
            if template_hash and name.endswith(f"-{template_hash}"):
                return "Deployment", name[: -len(template_hash) - 1]
        return kind, name
    return None, None


def _pod_resources(spec: Mapping[str, Any], which: str) -> Resources:
    """The pod's effective requests or limits, as the scheduler counts them.

    Regular containers and sidecars (init containers with ``restartPolicy: Always``)
    run together: their sum. An ordinary init container runs alone, beside the
    sidecars started before it. The pod needs the larger of the two, plus
    ``spec.overhead``. A limit is only defined when every container that counts
    sets it.
    """
    totals: dict[str, Decimal | None] = {}
    for resource in ("cpu", "memory"):
        running: Decimal | None = Decimal(0)
        sidecars: Decimal | None = Decimal(0)
        init_peak: Decimal | None = Decimal(0)
        for container in _list(spec.get("initContainers")):
            amount = _container_amount(container, which, resource)
            if container.get("restartPolicy") == "Always":
                sidecars = _add(sidecars, amount, which)
            else:
                init_peak = _peak(init_peak, _add(sidecars, amount, which))
        for container in _list(spec.get("containers")):
            running = _add(running, _container_amount(container, which, resource), which)
        running = _add(running, sidecars, which)
        total = None if running is None or init_peak is None else max(running, init_peak)
        overhead = _quantity(_mapping(spec.get("overhead")).get(resource))
        if total is not None and overhead is not None:
            total += overhead
        totals[resource] = total
    cpu, memory = totals["cpu"], totals["memory"]
    return Resources(
        cpu=None if cpu is None else float(cpu),
        memory=None if memory is None else int(memory),
    )


def _container_amount(container: Mapping[str, Any], which: str, resource: str) -> Decimal | None:
    resources = _mapping(container.get("resources"))
    amount = _quantity(_mapping(resources.get(which)).get(resource))
    if amount is None and which == "requests":
        # An unset request defaults to the limit (API defaulting does the same).
        amount = _quantity(_mapping(resources.get("limits")).get(resource))
        return Decimal(0) if amount is None else amount
    return amount


def _add(total: Decimal | None, amount: Decimal | None, which: str) -> Decimal | None:
    if total is None or amount is None:
        return None if which == "limits" else total
    return total + amount


def _peak(peak: Decimal | None, amount: Decimal | None) -> Decimal | None:
    if peak is None or amount is None:
        return None
    return max(peak, amount)


def _finished(status: Mapping[str, Any]) -> dt.datetime | None:
    ends = [
        _time(_mapping(_mapping(container.get("state")).get("terminated")).get("finishedAt"))
        for container in _list(status.get("containerStatuses"))
    ]
    known = [end for end in ends if end is not None]
    return max(known) if known else None


# -- plain values -------------------------------------------------------------------


def _resources(values: Mapping[str, Any]) -> Resources:
    cpu, memory = _quantity(values.get("cpu")), _quantity(values.get("memory"))
    return Resources(
        cpu=None if cpu is None else float(cpu),
        memory=None if memory is None else int(memory),
    )


def _quantity(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    # Imported here: the kubernetes client is large, and this module is also read by the
    # allocation, which never parses a quantity.
    from kubernetes.utils import parse_quantity  # noqa: PLC0415

    try:
        amount: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _labels(metadata: Mapping[str, Any]) -> Mapping[str, str]:
    labels = metadata.get("labels")
    if not isinstance(labels, Mapping):
        return {}
    return {str(key): str(value) for key, value in labels.items() if value is not None}


def _label(labels: Mapping[str, str], keys: Iterable[str]) -> str | None:
    for key in keys:
        value = stripped(labels.get(key))
        if value is not None:
            return value
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def stripped(value: object) -> str | None:
    """A string value, stripped; None if it is not a string or is blank."""
    if not isinstance(value, str):
        return None
    return value.strip() or None


def folded(value: str | None) -> str | None:
    """`value` case-folded (None stays None)."""
    return None if value is None else value.casefold()
