"""Facts of the host the sidecar runs on, outside Kubernetes: EC2 and ECS metadata.

The collector's ``resourcedetection`` processor would add these to every span,
but its module does not resolve at the distribution's release (its ``ec2`` and
``ecs`` detectors need ``go.opentelemetry.io/contrib/detectors/aws/*`` versions
the module proxy refuses), so the sidecar asks the same endpoints itself, once
at start-up and then every `refresh` in the background, never per span:

- EC2 instance metadata (IMDSv2: a session token, then the instance identity
  document and ``meta-data/instance-life-cycle``): instance type, region, zone,
  architecture, and whether the instance is spot;
- ECS task metadata v4 (``$ECS_CONTAINER_METADATA_URI_V4/task``): launch type,
  zone, and the task's CPU and memory limits (what Fargate bills).

`parse_identity_document` and `parse_ecs_task` are pure; `fetch_ec2` and
`fetch_ecs` do the I/O, with urllib3's retries. urllib3 (about 1.5 MiB of a process)
is imported by the first fetch, not with this module (issue 15): the cost plugin
imports this module whatever its config, and only a ``node_facts`` that asks EC2 or
ECS metadata needs an HTTP client.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from spancost.facts.model import Capacity, folded, stripped
from spancost.settings.node_facts import DEFAULT_IMDS_ENDPOINT

if TYPE_CHECKING:
    import urllib3

__all__ = [
    "DEFAULT_IMDS_ENDPOINT",
    "ECS_METADATA_VARIABLE",
    "HostFacts",
    "HostFactsError",
    "HostWatcher",
    "fetch_ec2",
    "fetch_ecs",
    "parse_ecs_task",
    "parse_identity_document",
]

logger = logging.getLogger(__name__)

ECS_METADATA_VARIABLE: Final = "ECS_CONTAINER_METADATA_URI_V4"
_RETRY_S: Final = 5.0
_TOKEN_TTL_S: Final = "21600"  # noqa: S105 - seconds, not a secret


class HostFactsError(Exception):
    """A metadata endpoint could not be reached or answered something unreadable."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the host's metadata says; None where it says nothing."""

    source: str  # "ec2_metadata" or "ecs_metadata"
    provider: str = "aws"
    platform: str | None = None  # cloud.platform: aws_ec2, aws_ecs
    instance_type: str | None = None
    region: str | None = None
    zone: str | None = None
    arch: str | None = None
    capacity: Capacity | None = None
    ecs_launch_type: str | None = None
    task_cpu: float | None = None  # vCPUs
    task_memory_mib: float | None = None
    instance_id: str | None = None
    launched: dt.datetime | None = None  # the identity document's pendingTime


def parse_identity_document(document: Mapping[str, Any], life_cycle: str | None) -> HostFacts:
    """EC2 facts from the instance identity document and ``instance-life-cycle``.

    Raises `HostFactsError` when the document names no instance type or region.
    """
    instance_type = stripped(document.get("instanceType"))
    region = stripped(document.get("region"))
    if instance_type is None or region is None:
        raise HostFactsError("the instance identity document has no instanceType or region")
    capacity: Capacity | None = None
    if life_cycle is not None:
        life = life_cycle.strip().casefold()
        # "scheduled" (Scheduled Instances) is billed at its own fixed rate: on-demand
        # is the nearer approximation than a spot discount.
        capacity = "spot" if life == "spot" else "on_demand" if life else None
    return HostFacts(
        source="ec2_metadata",
        platform="aws_ec2",
        instance_type=instance_type.casefold(),
        region=region.casefold(),
        zone=folded(stripped(document.get("availabilityZone"))),
        arch=folded(stripped(document.get("architecture"))),
        capacity=capacity,
        instance_id=stripped(document.get("instanceId")),
        launched=_time(document.get("pendingTime")),
    )


def parse_ecs_task(task: Mapping[str, Any]) -> HostFacts:
    """ECS facts from a task metadata v4 ``/task`` answer.

    ``Limits.CPU`` is in vCPUs and ``Limits.Memory`` in MiB; the region comes from
    the task ARN (``arn:aws:ecs:<region>:...``), else from the zone.
    """
    limits = task.get("Limits")
    limits = limits if isinstance(limits, Mapping) else {}
    zone = folded(stripped(task.get("AvailabilityZone")))
    region: str | None = None
    arn = stripped(task.get("TaskARN"))
    if arn is not None and arn.count(":") >= 5 and arn.startswith("arn:"):
        region = arn.split(":")[3] or None
    if region is None and zone is not None and zone[-1:].isalpha():
        region = zone[:-1]
    return HostFacts(
        source="ecs_metadata",
        platform="aws_ecs",
        region=region,
        zone=zone,
        ecs_launch_type=folded(stripped(task.get("LaunchType"))),
        task_cpu=_positive(limits.get("CPU")),
        task_memory_mib=_positive(limits.get("Memory")),
    )


def _pool(timeout_s: float, retries: int) -> urllib3.PoolManager:
    """An HTTP client for one fetch (the first imports urllib3, issue 15)."""
    import urllib3  # noqa: PLC0415 - only a config that asks the host's metadata needs it
    from urllib3.util import Retry, Timeout  # noqa: PLC0415

    return urllib3.PoolManager(
        timeout=Timeout(connect=timeout_s, read=timeout_s),
        retries=Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "PUT"}),
            raise_on_status=False,
        ),
    )


def fetch_ec2(
    endpoint: str = DEFAULT_IMDS_ENDPOINT, *, timeout_s: float = 1.0, retries: int = 2
) -> HostFacts:
    """Ask EC2's instance metadata service (IMDSv2); `HostFactsError` if it does not answer."""
    from urllib3.exceptions import HTTPError  # noqa: PLC0415 - see _pool

    base = endpoint.rstrip("/")
    pool = _pool(timeout_s, retries)
    try:
        token = pool.request(
            "PUT",
            f"{base}/latest/api/token",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_S},
        )
        if token.status != 200:
            raise HostFactsError(f"{base}: PUT /latest/api/token answered {token.status}")
        headers = {"X-aws-ec2-metadata-token": token.data.decode()}
        identity = pool.request(
            "GET", f"{base}/latest/dynamic/instance-identity/document", headers=headers
        )
        if identity.status != 200:
            raise HostFactsError(f"{base}: the identity document answered {identity.status}")
        life = pool.request("GET", f"{base}/latest/meta-data/instance-life-cycle", headers=headers)
    except HTTPError as exc:
        raise HostFactsError(f"{base}: {exc}") from exc
    document = _json_object(identity.data, f"{base}: the identity document")
    life_cycle = life.data.decode(errors="replace") if life.status == 200 else None
    return parse_identity_document(document, life_cycle)


def fetch_ecs(base: str, *, timeout_s: float = 1.0, retries: int = 2) -> HostFacts:
    """Ask the ECS task metadata endpoint `base` (``$ECS_CONTAINER_METADATA_URI_V4``)."""
    from urllib3.exceptions import HTTPError  # noqa: PLC0415 - see _pool

    url = f"{base.rstrip('/')}/task"
    try:
        answer = _pool(timeout_s, retries).request("GET", url)
    except HTTPError as exc:
        raise HostFactsError(f"{url}: {exc}") from exc
    if answer.status != 200:
        raise HostFactsError(f"{url} answered {answer.status}")
    return parse_ecs_task(_json_object(answer.data, url))


def _json_object(data: bytes, what: str) -> Mapping[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise HostFactsError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, Mapping):
        raise HostFactsError(f"{what} is not a JSON object")
    return value


class HostWatcher:
    """`fetch` once now (a failure is logged, not raised), then every `refresh_s` in the
    background, and sooner after a failure (5 s, doubling up to `refresh_s`); `facts` is
    the last answer (kept when a later fetch fails)."""

    def __init__(self, name: str, fetch: Callable[[], HostFacts], refresh_s: float) -> None:
        self.name = name
        self._fetch = fetch
        self._refresh = refresh_s
        self._stop = threading.Event()
        self.facts: HostFacts | None = None
        self.failures = 0
        self.version = 0
        self._thread = threading.Thread(target=self._run, name=f"spancost-{name}", daemon=True)

    def start(self) -> HostWatcher:
        self.fetch_now()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def fetch_now(self) -> bool:
        try:
            facts = self._fetch()
        except HostFactsError as exc:
            self.failures += 1
            logger.warning(
                "node facts: %s: %s; %s",
                self.name,
                exc,
                "keeping the last answer" if self.facts else "no facts from it yet",
            )
            return False
        if facts != self.facts:
            logger.info("node facts: %s says %s", self.name, facts)
            self.facts = facts
            self.version += 1
        return True

    def _run(self) -> None:
        failures = 0 if self.facts is not None else 1
        while not self._stop.wait(self._delay(failures)):
            failures = 0 if self.fetch_now() else failures + 1

    def _delay(self, failures: int) -> float:
        """`refresh` after a success; after failures, sooner: 5 s, 10 s, ... up to it."""
        if failures == 0:
            return self._refresh
        return min(self._refresh, _RETRY_S * float(1 << min(failures - 1, 16)))


def _time(value: object) -> dt.datetime | None:
    text = stripped(value)
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _positive(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None
