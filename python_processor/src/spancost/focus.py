"""The allocation as a FinOps FOCUS 1.2 cost-and-usage dataset (pure): rows in, records out.

`spancost export focus` reads a window's allocation per node and hour
(`AllocationStore.allocation_by_node`) and writes what `focus_records` makes of it:

- **one row per node, UTC hour and allocation line**: a transaction's share of the node
  (its pods' CPU and memory requests, 9:1 by default, split by busy time), an untraced
  workload's, or idle. The node's hourly cost is the *origin charge* of FOCUS 1.3's
  split cost allocation; its rows are the *allocated charges*: ``AllocatedMethodDetails``
  holds each one's ratio of it, and the ratios of a node-hour add up to 1.
- **one row per hour and transaction for what its spans priced per request** (Lambda,
  Fargate, LLM tokens, rules): no node's, named by ``Tags``.

So the dataset's ``BilledCost`` adds up to ``spancost report``'s allocation: the nodes'
bill plus the per-request prices. Every FOCUS 1.2 column a dataset must hold is present
(`COLUMNS`, `MANDATORY`); the README section "`spancost export focus`" says how each is
filled, and where spancost has no honest value for it.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Final, Literal, NamedTuple

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.store.base import (
    NodeAllocation,
    NodeHourRow,
    NodeShareRow,
    ReconcileRow,
    RequestPricedRow,
)
from spancost.store.common import add_months, month_start

__all__ = [
    "ALLOCATED_METHOD_ID",
    "COLUMNS",
    "FOCUS_VERSION",
    "MANDATORY",
    "PENDING_NAME",
    "TAG_PREFIX",
    "BillingAccount",
    "Column",
    "Record",
    "Summary",
    "focus_records",
    "split_differs",
    "summary",
    "text",
    "write_csv",
]

FOCUS_VERSION: Final = "1.2"
"""The FOCUS version of the columns; the ``Allocated*`` columns are 1.3's."""
ALLOCATED_METHOD_ID: Final = "spancost-requests-busy-time"
"""``AllocatedMethodId`` of every node row: the README's "Costs that add up to the bill"."""
TAG_PREFIX: Final = "spancost/"
"""The prefix of the tag keys spancost defines (``Tags``, ``AllocatedTags``)."""
PENDING_NAME: Final = "(pending)"
"""The transaction of busy time whose traces wait for their root (stored as ``''``)."""

_CURRENCY: Final = "USD"
_HOUR: Final = timedelta(hours=1)
_PROVIDER: Final = "AWS"
_PER_REQUEST_PROVIDER: Final = "Multiple"
"""Per-request prices are kept summed over their providers (AWS, LLM vendors, rules)."""
_PER_REQUEST_SERVICE: Final = "Priced per request (Lambda, Fargate, LLM tokens, rules)"

_WORDS: Final = {"transaction": "transaction", "untraced": "untraced workload"}

DataType = Literal["Decimal", "Date/Time", "String", "JSON"]
Level = Literal["Mandatory", "Recommended", "Conditional", "Custom"]
Value = Decimal | datetime | str | None
Record = dict[str, Value]


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the dataset, as the FOCUS specification defines it."""

    name: str
    data_type: DataType
    nullable: bool
    level: Level
    version: str = FOCUS_VERSION
    """The FOCUS version that defines it ('' for a custom ``x_`` column)."""


COLUMNS: Final[tuple[Column, ...]] = (
    # FOCUS columns first, alphabetically (Column Handling), then the custom ones.
    Column("AllocatedMethodDetails", "JSON", True, "Recommended", "1.3"),
    Column("AllocatedMethodId", "String", True, "Conditional", "1.3"),
    Column("AllocatedResourceId", "String", True, "Conditional", "1.3"),
    Column("AllocatedResourceName", "String", True, "Conditional", "1.3"),
    Column("AllocatedTags", "JSON", True, "Conditional", "1.3"),
    Column("AvailabilityZone", "String", True, "Recommended"),
    Column("BilledCost", "Decimal", False, "Mandatory"),
    Column("BillingAccountId", "String", False, "Mandatory"),
    Column("BillingAccountName", "String", True, "Mandatory"),
    Column("BillingCurrency", "String", False, "Mandatory"),
    Column("BillingPeriodEnd", "Date/Time", False, "Mandatory"),
    Column("BillingPeriodStart", "Date/Time", False, "Mandatory"),
    Column("ChargeCategory", "String", False, "Mandatory"),
    Column("ChargeClass", "String", True, "Mandatory"),
    Column("ChargeDescription", "String", True, "Mandatory"),
    Column("ChargeFrequency", "String", False, "Recommended"),
    Column("ChargePeriodEnd", "Date/Time", False, "Mandatory"),
    Column("ChargePeriodStart", "Date/Time", False, "Mandatory"),
    Column("ContractedCost", "Decimal", False, "Mandatory"),
    Column("ContractedUnitPrice", "Decimal", True, "Conditional"),
    Column("EffectiveCost", "Decimal", False, "Mandatory"),
    Column("InvoiceIssuerName", "String", False, "Mandatory"),
    Column("ListCost", "Decimal", False, "Mandatory"),
    Column("ListUnitPrice", "Decimal", True, "Conditional"),
    Column("PricingCategory", "String", True, "Conditional"),
    Column("PricingQuantity", "Decimal", True, "Mandatory"),
    Column("PricingUnit", "String", True, "Mandatory"),
    Column("ProviderName", "String", False, "Mandatory"),
    Column("PublisherName", "String", False, "Mandatory"),
    Column("RegionId", "String", True, "Conditional"),
    Column("RegionName", "String", True, "Conditional"),
    Column("ResourceId", "String", True, "Conditional"),
    Column("ResourceName", "String", True, "Conditional"),
    Column("ResourceType", "String", True, "Conditional"),
    Column("ServiceCategory", "String", False, "Mandatory"),
    Column("ServiceName", "String", False, "Mandatory"),
    Column("ServiceSubcategory", "String", False, "Recommended"),
    Column("Tags", "JSON", True, "Conditional"),
    Column("x_AllocationKind", "String", False, "Custom", ""),
    Column("x_InstanceType", "String", True, "Custom", ""),
    Column("x_PriceAsOf", "String", True, "Custom", ""),
    Column("x_PriceModel", "String", True, "Custom", ""),
    Column("x_PriceSource", "String", True, "Custom", ""),
)
MANDATORY: Final = tuple(column.name for column in COLUMNS if column.level == "Mandatory")


@dataclass(frozen=True, slots=True)
class BillingAccount:
    """Who pays: FOCUS requires the billing account, and spancost's store does not know it."""

    id: str
    name: str | None = None


class Summary(NamedTuple):
    """What an export holds, in USD: the nodes' bill, the per-request prices, and the
    node-hours left out for want of a price."""

    bill_usd: float
    per_request_usd: float
    unpriced_node_hours: int

    @property
    def total_usd(self) -> float:
        return self.bill_usd + self.per_request_usd


def focus_records(
    allocation: NodeAllocation, account: BillingAccount, weights: Weights = DEFAULT_WEIGHTS
) -> list[Record]:
    """The FOCUS rows of `allocation` (split with `weights`), by hour: each hour's node
    rows (by node, then idle, transactions, untraced workloads), then its per-request
    rows. Node-hours without a price have no rows (`summary` counts them)."""
    nodes = {(n.hour, n.node): n for n in allocation.nodes}
    records: list[tuple[datetime, int, Record]] = []
    for share in allocation.shares:
        node = nodes[(share.hour, share.node)]
        records.append((share.hour, 0, _node_record(share, node, account, weights)))
    for priced in allocation.per_request:
        records.append((priced.hour, 1, _per_request_record(priced, account)))
    records.sort(key=lambda item: item[:2])  # stable: the rows' own order within
    return [record for _, _, record in records]


def summary(allocation: NodeAllocation) -> Summary:
    return Summary(
        bill_usd=math.fsum(share.usd for share in allocation.shares),
        per_request_usd=math.fsum(priced.usd for priced in allocation.per_request),
        unpriced_node_hours=sum(1 for node in allocation.nodes if node.hourly_usd is None),
    )


def split_differs(
    allocation: NodeAllocation, stored: Sequence[ReconcileRow]
) -> list[tuple[datetime, str]]:
    """The node-hours whose split here differs from the stored allocation's
    (`AllocationStore.reconcile`): allocated with other weights than the export's, so
    its transactions would not match ``spancost report``'s (the bill still does)."""
    split: dict[tuple[datetime, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for share in allocation.shares:
        split[(share.hour, share.node)][share.kind].append(share.usd)
    differs: list[tuple[datetime, str]] = []
    for row in stored:
        if row.bill_usd is None:
            continue
        kinds = split.get((row.hour, row.node), {})
        pairs = (
            (row.transactions_usd, kinds.get("transaction", [])),
            (row.untraced_usd, kinds.get("untraced", [])),
            (row.idle_usd, kinds.get("idle", [])),
        )
        if not all(
            math.isclose(kept, math.fsum(here), rel_tol=1e-9, abs_tol=1e-12) for kept, here in pairs
        ):
            differs.append((row.hour, row.node))
    return differs


def text(value: Value) -> str:
    """A value as a FOCUS CSV field: decimals without exponent, date/times as
    ``YYYY-MM-DDTHH:MM:SSZ``, null as the empty field."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def write_csv(records: Iterable[Record], out: IO[str]) -> int:
    """`records` as CSV with a header of `COLUMNS` to `out`; how many rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([column.name for column in COLUMNS])
    rows = 0
    for record in records:
        writer.writerow([text(record[column.name]) for column in COLUMNS])
        rows += 1
    return rows


def _node_record(
    share: NodeShareRow, node: NodeHourRow, account: BillingAccount, weights: Weights
) -> Record:
    hourly = node.hourly_usd
    bill = node.bill_usd
    if hourly is None or bill is None or bill <= 0:  # the allocation split none of it
        raise ValueError(f"node {node.node} at {text(node.hour)} has no cost to share")
    cost = _decimal(share.usd)
    instance = f"{node.instance_type}, " if node.instance_type else ""
    of_node = f"EC2 node {node.node} ({instance}{text(_decimal(hourly))} USD an hour)"
    name, resource_id, tags = _allocated_to(share)
    description = (
        f"Idle share of {of_node}: capacity no pod requested, time without pods"
        if share.kind == "idle"
        else f"Share of {of_node} allocated to {_WORDS[share.kind]} {name}"
    )
    details = {
        "Elements": [{"AllocatedRatio": share.usd / bill}],
        "x_CpuWeight": weights.cpu,
        "x_MemoryWeight": weights.memory,
    }
    return {
        **_common(share.hour, account, cost),
        "AllocatedMethodDetails": _json(details),
        "AllocatedMethodId": ALLOCATED_METHOD_ID,
        "AllocatedResourceId": resource_id,
        "AllocatedResourceName": name,
        "AllocatedTags": _json(tags) if tags else None,
        "AvailabilityZone": node.zone or None,
        "ChargeDescription": description,
        "ContractedUnitPrice": _decimal(hourly),
        "InvoiceIssuerName": _PROVIDER,
        "ListUnitPrice": _decimal(hourly),
        "PricingCategory": "Dynamic" if node.capacity_type == "spot" else "Standard",
        "PricingQuantity": _decimal(share.usd / hourly),
        "PricingUnit": "Hours",
        "ProviderName": _PROVIDER,
        "PublisherName": _PROVIDER,
        "RegionId": node.region or None,
        "RegionName": node.region or None,
        "ResourceId": node.node,
        "ResourceName": node.node,
        "ResourceType": "Virtual Machine",
        "ServiceCategory": "Compute",
        "ServiceName": "Amazon Elastic Compute Cloud",
        "ServiceSubcategory": "Virtual Machines",
        "Tags": None,
        "x_AllocationKind": share.kind,
        "x_InstanceType": node.instance_type or None,
        "x_PriceAsOf": node.price_as_of or None,
        "x_PriceModel": node.price_model or None,
        "x_PriceSource": node.price_source or None,
    }


def _per_request_record(priced: RequestPricedRow, account: BillingAccount) -> Record:
    cost = _decimal(priced.usd)
    transaction = priced.transaction or PENDING_NAME
    tags = _labels(priced.domain, transaction, priced.environment)
    return {
        **_common(priced.hour, account, cost),
        "AllocatedMethodDetails": None,
        "AllocatedMethodId": None,
        "AllocatedResourceId": None,
        "AllocatedResourceName": None,
        "AllocatedTags": None,
        "AvailabilityZone": None,
        "ChargeDescription": f"What transaction {transaction}'s spans priced per request"
        " cost (Lambda, Fargate, LLM tokens, rules)",
        # One unit of what the store keeps: the transaction's per-request prices in the hour.
        "ContractedUnitPrice": cost,
        "InvoiceIssuerName": _PER_REQUEST_PROVIDER,
        "ListUnitPrice": cost,
        "PricingCategory": "Standard",
        "PricingQuantity": Decimal(1),
        "PricingUnit": "Units",
        "ProviderName": _PER_REQUEST_PROVIDER,
        "PublisherName": _PER_REQUEST_PROVIDER,
        "RegionId": None,
        "RegionName": None,
        "ResourceId": None,
        "ResourceName": None,
        "ResourceType": None,
        "ServiceCategory": "Other",
        "ServiceName": _PER_REQUEST_SERVICE,
        "ServiceSubcategory": "Other (Other)",
        "Tags": _json(tags),
        "x_AllocationKind": "per_request",
        "x_InstanceType": None,
        "x_PriceAsOf": None,
        "x_PriceModel": None,
        "x_PriceSource": None,
    }


def _common(hour: datetime, account: BillingAccount, cost: Decimal) -> Record:
    """The columns every row fills alike: who pays, when, and the cost (public prices,
    no discount or commitment known: billed = effective = contracted = list)."""
    month = month_start(hour)
    return {
        "BilledCost": cost,
        "BillingAccountId": account.id,
        "BillingAccountName": account.name or None,
        "BillingCurrency": _CURRENCY,
        "BillingPeriodEnd": add_months(month, 1),
        "BillingPeriodStart": month,
        "ChargeCategory": "Usage",
        "ChargeClass": None,
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": hour + _HOUR,
        "ChargePeriodStart": hour,
        "ContractedCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
    }


def _allocated_to(share: NodeShareRow) -> tuple[str | None, str | None, dict[str, str]]:
    """(AllocatedResourceName, AllocatedResourceId, AllocatedTags) of a node row. Idle
    is the unallocated part of the node: no resource, no tags. An id's parts but the
    last are escaped, so that only the last (a transaction's or workload's own name)
    may hold a slash."""
    if share.kind == "transaction":
        transaction = share.transaction or PENDING_NAME
        resource = f"transaction/{_part(share.domain)}/{_part(share.environment)}/{transaction}"
        return transaction, resource, _labels(share.domain, transaction, share.environment)
    if share.kind == "untraced":
        name = f"{share.namespace}/{share.workload}" if share.namespace else share.workload
        tags = {"domain": share.domain, "namespace": share.namespace, "workload": share.workload}
        resource = f"workload/{_part(share.namespace)}/{share.workload}"
        return name, resource, _tags(tags)
    return None, None, {}


def _labels(domain: str, transaction: str, environment: str) -> dict[str, str]:
    return _tags({"domain": domain, "transaction": transaction, "environment": environment})


def _tags(values: dict[str, str]) -> dict[str, str]:
    return {TAG_PREFIX + key: value for key, value in values.items() if value}


def _part(value: str) -> str:
    return value.replace("%", "%25").replace("/", "%2F")


def _decimal(value: float) -> Decimal:
    """A float as the shortest decimal that reads back as it (``repr``)."""
    return Decimal(repr(value))


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
