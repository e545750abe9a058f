"""`spancost.focus`: the allocation as FOCUS 1.2 rows, checked against the specification's
column rules on the README's worked example, a spot node beside it, a node without a
price and per-request prices (no database: `store.allocated.by_node` over the rows a
store would read)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.focus import (
    ALLOCATED_METHOD_ID,
    COLUMNS,
    MANDATORY,
    PENDING_NAME,
    BillingAccount,
    Record,
    focus_records,
    split_differs,
    summary,
    text,
    write_csv,
)
from spancost.store.allocated import by_node
from spancost.store.base import NodeAllocation, ReconcileRow
from spancost.totals import TotalsConfig
from tests.allocation_data import EXPECTED, HOUR, HOUR_NS, M5_LARGE, NODE, NODE_PRICE, PODS

# FOCUS 1.2, "Column definitions": the columns with Feature level Mandatory.
FOCUS_1_2_MANDATORY = {
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargePeriodEnd", "ChargePeriodStart", "ContractedCost",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ServiceCategory", "ServiceName",
}  # fmt: skip
# ... and those that allow no null.
FOCUS_1_2_NOT_NULL = FOCUS_1_2_MANDATORY - {
    "BillingAccountName", "ChargeClass", "ChargeDescription", "PricingQuantity", "PricingUnit",
}  # fmt: skip
# FOCUS 1.3's split cost allocation columns.
FOCUS_1_3_ALLOCATION = {
    "AllocatedMethodId", "AllocatedMethodDetails", "AllocatedResourceId",
    "AllocatedResourceName", "AllocatedTags",
}  # fmt: skip
SERVICE_SUBCATEGORIES = {"Compute": {"Virtual Machines"}, "Other": {"Other (Other)"}}

NUMERIC = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")  # no exponent, sign, comma or unit
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")

ACCOUNT = BillingAccount("123456789012", "shop-payer")
SPOT = "ip-10-0-2-7"
SPOT_HOURLY = 0.0576  # m5.xlarge: 4 vCPU, 16 GiB; 9 x 4 + 16 = 52
UNPRICED = "ip-10-0-3-9"


def allocation(weights: Weights = DEFAULT_WEIGHTS) -> NodeAllocation:
    """The worked example's hour, with beside it a spot node that ran half the hour
    (api served GET /cart 300 s and traces still waiting for their root 100 s; an
    untraced host process without a namespace) and a node without a price; checkout's
    spans priced 0.25 USD per request, the waiting ones 0.01."""
    spot = (HOUR_NS, SPOT, 1800.0, "us-east-1", "m5.xlarge", "linux", "spot", "us-east-1b",
            4.0, 16.0, SPOT_HOURLY, "aws_spot", "ec2.spot.duration", "2025-01-31")  # fmt: skip
    unpriced = (HOUR_NS, UNPRICED, 3600.0, "us-east-1", "x9.huge", "linux", "on_demand",
                "us-east-1a", 8.0, 32.0, None, None, None, None)  # fmt: skip
    nodes = [(*NODE, *NODE_PRICE[:4]), spot, unpriced]
    pods = [tuple(pod) for pod in PODS] + [
        (HOUR_NS, "api", SPOT, 1800.0, 1.0, 4.0, "shop", "Deployment/api"),
        (HOUR_NS, "host", SPOT, 1800.0, 0.5, 1.0, "", "host"),
        (HOUR_NS, "batch", UNPRICED, 3600.0, 2.0, 8.0, "shop", "Job/batch"),
    ]
    busy = [
        (HOUR_NS, "web", "retail", "checkout", "production", 1200.0),
        (HOUR_NS, "web", "retail", "search", "production", 600.0),
        (HOUR_NS, "worker", "retail", "checkout", "production", 300.0),
        (HOUR_NS, "api", "retail/eu", "GET /cart", "production", 300.0),
        (HOUR_NS, "api", "", "", "", 100.0),
    ]
    per_request = [
        (HOUR_NS, "retail", "checkout", "production", 0.25),
        (HOUR_NS, "", "", "", 0.01),
    ]
    return by_node(nodes, pods, busy, per_request, weights=weights, config=TotalsConfig())


def records(weights: Weights = DEFAULT_WEIGHTS) -> list[Record]:
    return focus_records(allocation(weights), ACCOUNT, weights)


def node_rows(rows: list[Record], node: str) -> list[Record]:
    return [row for row in rows if row["ResourceId"] == node]


def number(value: object) -> float:
    assert isinstance(value, Decimal)
    return float(value)


# -- the columns ----------------------------------------------------------------------


def test_every_mandatory_focus_1_2_column_and_the_1_3_allocation_columns_are_there() -> None:
    names = [column.name for column in COLUMNS]
    assert set(names) >= FOCUS_1_2_MANDATORY
    assert set(MANDATORY) == FOCUS_1_2_MANDATORY
    assert set(names) >= FOCUS_1_3_ALLOCATION
    assert {c.name for c in COLUMNS if not c.nullable} >= FOCUS_1_2_NOT_NULL
    assert len(set(names)) == len(names)
    header = io.StringIO()
    write_csv([], header)
    assert header.getvalue() == ",".join(names) + "\n"


def test_column_names_and_order_follow_column_handling() -> None:
    focus = [c.name for c in COLUMNS if c.level != "Custom"]
    custom = [c.name for c in COLUMNS if c.level == "Custom"]
    assert all(PASCAL.match(name) and len(name) <= 50 for name in focus)
    assert all(name.startswith("x_") and PASCAL.match(name[2:]) for name in custom)
    assert [c.name for c in COLUMNS] == sorted(focus) + sorted(custom)  # FOCUS first
    assert {c.version for c in COLUMNS if c.name in FOCUS_1_3_ALLOCATION} == {"1.3"}


def test_every_row_fills_every_column_with_its_type() -> None:
    rows = records()
    assert rows
    for row in rows:
        assert set(row) == {c.name for c in COLUMNS}
        for column in COLUMNS:
            value = row[column.name]
            if value is None:
                assert column.nullable, column.name
                continue
            if column.data_type == "Decimal":
                assert isinstance(value, Decimal) and NUMERIC.match(text(value)), column.name
            elif column.data_type == "Date/Time":
                assert isinstance(value, datetime) and DATE_TIME.match(text(value))
            elif column.data_type == "JSON":
                assert isinstance(value, str) and isinstance(json.loads(value), dict)
            else:
                assert isinstance(value, str) and value.strip(), column.name  # no ''


def test_the_values_focus_allows() -> None:
    for row in records():
        assert row["BillingCurrency"] == "USD"
        assert (row["BillingAccountId"], row["BillingAccountName"]) == (ACCOUNT.id, ACCOUNT.name)
        assert row["ChargeCategory"] == "Usage" and row["ChargeClass"] is None
        assert row["ChargeFrequency"] == "Usage-Based"
        assert row["PricingCategory"] in {"Standard", "Dynamic", "Committed", "Other"}
        category, subcategory = row["ServiceCategory"], row["ServiceSubcategory"]
        assert isinstance(category, str) and subcategory in SERVICE_SUBCATEGORIES[category]
        # Usage that is not a correction: a pricing quantity, unit and unit prices.
        for name in ("PricingQuantity", "PricingUnit", "ListUnitPrice", "ContractedUnitPrice"):
            assert row[name] is not None, name
        for unit_price, cost in (("ListUnitPrice", "ListCost"),
                                 ("ContractedUnitPrice", "ContractedCost")):  # fmt: skip
            product = number(row[unit_price]) * number(row["PricingQuantity"])
            assert product == pytest.approx(number(row[cost]), rel=1e-12)
        billed = row["BilledCost"]
        assert row["EffectiveCost"] == row["ContractedCost"] == row["ListCost"] == billed
        assert (row["RegionName"] is None) == (row["RegionId"] is None)
        assert (row["ResourceType"] is None) == (row["ResourceId"] is None)
        assert row["ProviderName"] == row["PublisherName"] == row["InvoiceIssuerName"]


def test_periods_are_the_hour_and_its_utc_month() -> None:
    for row in records():
        assert row["ChargePeriodStart"] == HOUR
        assert row["ChargePeriodEnd"] == HOUR + timedelta(hours=1)
        assert row["BillingPeriodStart"] == datetime(2025, 1, 1, tzinfo=UTC)
        assert row["BillingPeriodEnd"] == datetime(2025, 2, 1, tzinfo=UTC)


def test_a_december_hour_bills_in_a_period_that_ends_in_january() -> None:
    late = int(datetime(2025, 12, 31, 23, tzinfo=UTC).timestamp()) * 10**9
    node = (late, "n", 3600.0, "us-east-1", "m5.large", "linux", "on_demand", None,
            2.0, 8.0, M5_LARGE, "bundled", "ec2.on_demand.duration", "2025-01-01")  # fmt: skip
    (row,) = focus_records(by_node([node], [], [], [], weights=Weights(), config=TotalsConfig()),
                           ACCOUNT)  # fmt: skip
    assert text(row["BillingPeriodEnd"]) == "2026-01-01T00:00:00Z"
    assert text(row["ChargePeriodEnd"]) == "2026-01-01T00:00:00Z"
    assert row["AvailabilityZone"] is None


# -- the allocation ---------------------------------------------------------------------


def test_the_worked_example_as_allocated_charges() -> None:
    rows = node_rows(records(), NODE.node)
    got = {
        (row["x_AllocationKind"], row["AllocatedResourceName"]): number(row["BilledCost"])
        for row in rows
    }
    assert got == pytest.approx(
        {
            ("transaction", "checkout"): EXPECTED[("transaction", "checkout")],
            ("transaction", "search"): EXPECTED[("transaction", "search")],
            ("untraced", "data/StatefulSet/postgres"):
                EXPECTED[("untraced", "StatefulSet/postgres")],
            ("idle", None): EXPECTED[("idle", "")],
        },
        rel=1e-12,
    )  # fmt: skip
    checkout = next(row for row in rows if row["AllocatedResourceName"] == "checkout")
    assert checkout["AllocatedResourceId"] == "transaction/retail/production/checkout"
    assert json.loads(str(checkout["AllocatedTags"])) == {
        "spancost/domain": "retail",
        "spancost/transaction": "checkout",
        "spancost/environment": "production",
    }
    assert checkout["ResourceId"] == checkout["ResourceName"] == NODE.node
    assert (checkout["RegionId"], checkout["AvailabilityZone"]) == ("us-east-1", "us-east-1a")
    assert checkout["ServiceName"] == "Amazon Elastic Compute Cloud"
    assert (checkout["ListUnitPrice"], checkout["PricingUnit"]) == (Decimal("0.096"), "Hours")
    assert number(checkout["PricingQuantity"]) == pytest.approx(
        EXPECTED[("transaction", "checkout")] / M5_LARGE
    )
    assert (checkout["x_PriceSource"], checkout["x_PriceAsOf"]) == ("bundled", "2025-01-01")
    assert checkout["x_InstanceType"] == "m5.large"
    assert checkout["ChargeDescription"] == (
        "Share of EC2 node ip-10-0-1-5 (m5.large, 0.096 USD an hour) allocated to"
        " transaction checkout"
    )


def test_ratios_of_every_node_hour_add_up_to_one_and_costs_to_its_bill() -> None:
    rows = records()
    ratios: dict[tuple[object, object], list[float]] = defaultdict(list)
    costs: dict[tuple[object, object], list[float]] = defaultdict(list)
    for row in rows:
        if row["AllocatedMethodId"] is None:
            continue
        assert row["AllocatedMethodId"] == ALLOCATED_METHOD_ID
        details = json.loads(str(row["AllocatedMethodDetails"]))
        assert (details["x_CpuWeight"], details["x_MemoryWeight"]) == (9.0, 1.0)
        (element,) = details["Elements"]
        assert 0 < element["AllocatedRatio"] <= 1
        node_hour = (row["ChargePeriodStart"], row["ResourceId"])
        ratios[node_hour].append(element["AllocatedRatio"])
        costs[node_hour].append(number(row["BilledCost"]))
    assert set(ratios) == {(HOUR, NODE.node), (HOUR, SPOT)}  # the unpriced node: no row
    for where, parts in ratios.items():
        assert math.fsum(parts) == pytest.approx(1.0, rel=1e-12), where
    assert math.fsum(costs[(HOUR, NODE.node)]) == pytest.approx(M5_LARGE, rel=1e-12)
    assert math.fsum(costs[(HOUR, SPOT)]) == pytest.approx(SPOT_HOURLY / 2, rel=1e-12)


def test_a_spot_node_an_untraced_process_and_traces_waiting_for_their_root() -> None:
    rows = node_rows(records(), SPOT)
    by_name = {row["AllocatedResourceName"]: row for row in rows}
    unit = SPOT_HOURLY / 52 / 2  # half an hour
    assert number(by_name["GET /cart"]["BilledCost"]) == pytest.approx(13 * unit * 0.75)
    assert number(by_name[PENDING_NAME]["BilledCost"]) == pytest.approx(13 * unit * 0.25)
    assert number(by_name["host"]["BilledCost"]) == pytest.approx(5.5 * unit)
    # Only the last part of an id may hold a slash: the others are escaped.
    assert by_name["GET /cart"]["AllocatedResourceId"] == (
        "transaction/retail%2Feu/production/GET /cart"
    )
    assert by_name[PENDING_NAME]["AllocatedResourceId"] == "transaction///(pending)"
    assert json.loads(str(by_name[PENDING_NAME]["AllocatedTags"])) == {
        "spancost/transaction": PENDING_NAME
    }
    assert by_name["host"]["AllocatedResourceId"] == "workload//host"
    idle = by_name[None]
    assert idle["AllocatedResourceId"] is None and idle["AllocatedTags"] is None
    assert idle["AllocatedMethodId"] == ALLOCATED_METHOD_ID  # the unallocated part
    for row in rows:
        assert row["PricingCategory"] == "Dynamic"
        assert row["ListUnitPrice"] == Decimal("0.0576")
        assert row["x_PriceSource"] == "aws_spot"


def test_per_request_prices_are_usage_named_by_tags_and_split_from_no_node() -> None:
    rows = [row for row in records() if row["x_AllocationKind"] == "per_request"]
    by_tags = {str(row["Tags"]): row for row in rows}
    checkout = by_tags[
        '{"spancost/domain":"retail","spancost/transaction":"checkout",'
        '"spancost/environment":"production"}'
    ]
    assert checkout["BilledCost"] == Decimal("0.25")
    assert (checkout["PricingQuantity"], checkout["PricingUnit"]) == (Decimal(1), "Units")
    assert checkout["ServiceCategory"] == "Other"
    for row in rows:
        for name in ("ResourceId", "RegionId", "AvailabilityZone", *FOCUS_1_3_ALLOCATION):
            assert row[name] is None, name
    assert by_tags['{"spancost/transaction":"(pending)"}']["BilledCost"] == Decimal("0.01")


def test_rows_come_by_hour_nodes_first() -> None:
    kinds = [(row["ResourceId"], row["x_AllocationKind"]) for row in records()]
    assert kinds[-2:] == [(None, "per_request")] * 2
    nodes = [str(node) for node, _ in kinds[:-2]]
    assert nodes == sorted(nodes)


def test_summary_counts_the_bill_the_per_request_prices_and_the_unpriced_hours() -> None:
    totals = summary(allocation())
    assert totals.bill_usd == pytest.approx(M5_LARGE + SPOT_HOURLY / 2, rel=1e-12)
    assert totals.per_request_usd == pytest.approx(0.26)
    assert totals.unpriced_node_hours == 1
    billed = math.fsum(number(row["BilledCost"]) for row in records())
    assert billed == pytest.approx(totals.total_usd, rel=1e-12)


def test_other_weights_split_differently_and_are_told_apart() -> None:
    nine_to_one = allocation()
    even = allocation(Weights(1.0, 1.0))
    assert summary(even).bill_usd == pytest.approx(summary(nine_to_one).bill_usd)

    def stored(split: NodeAllocation) -> list[ReconcileRow]:
        sums: dict[tuple[datetime, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for share in split.shares:
            sums[(share.hour, share.node)][share.kind] += share.usd
        return [
            ReconcileRow(hour, node, 1.0, kinds["transaction"], kinds["untraced"],
                         kinds["idle"], None, None, None)
            for (hour, node), kinds in sums.items()
        ]  # fmt: skip

    assert split_differs(nine_to_one, stored(nine_to_one)) == []
    assert sorted(split_differs(nine_to_one, stored(even))) == [(HOUR, NODE.node), (HOUR, SPOT)]
    details = json.loads(str(focus_records(even, ACCOUNT, Weights(1.0, 1.0))[0][
        "AllocatedMethodDetails"]))  # fmt: skip
    assert (details["x_CpuWeight"], details["x_MemoryWeight"]) == (1.0, 1.0)


# -- the CSV --------------------------------------------------------------------------


def test_text_writes_decimals_without_exponent_and_utc_times_with_z() -> None:
    assert text(Decimal(repr(1e-7))) == "0.0000001"
    assert text(Decimal(repr(0.096))) == "0.096"
    assert text(Decimal(1)) == "1"
    assert text(datetime(2025, 1, 31, 12, 30, tzinfo=UTC)) == "2025-01-31T12:30:00Z"
    assert text(None) == ""


def test_the_csv_reads_back_row_for_row() -> None:
    rows = records()
    out = io.StringIO()
    assert write_csv(rows, out) == len(rows)
    read = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(read) == len(rows)
    for written, back in zip(rows, read, strict=True):
        assert back == {name: text(value) for name, value in written.items()}
        for name in FOCUS_1_2_NOT_NULL:
            assert back[name], name
