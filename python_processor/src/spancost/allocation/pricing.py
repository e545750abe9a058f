"""A node-hour's price, from the same price book and rules that price spans (pure).

The node is priced as an EC2 instance of its type, region and operating system; a spot
node at its zone's spot price when a live spot source knows it, else at the on-demand
price less the spot discount (`spancost.pricing.compute`). What is stored with the
node-hour: the hourly price, where it came from and as of when, or why there is none.
"""

from __future__ import annotations

from typing import NamedTuple

from spancost.allocation.usage import NodeUsage
from spancost.pricing.catalog import PriceBook
from spancost.pricing.compute import ComputeSettings, plan_compute
from spancost.pricing.facts import ResourceFacts
from spancost.pricing.model import Unpriced

__all__ = ["NodePrice", "price_node"]


class NodePrice(NamedTuple):
    """A node-hour's price per hour, or (`hourly_usd` None) why it has none."""

    hourly_usd: float | None
    source: str | None = None
    model: str | None = None
    as_of: str | None = None
    unpriced_reason: str | None = None


def price_node(node: NodeUsage, book: PriceBook, settings: ComputeSettings) -> NodePrice:
    """What `node` costs an hour, by the book."""
    facts = ResourceFacts(
        provider="aws",
        platform="aws_ec2",
        region=node.region,
        availability_zone=node.zone,
        host_type=node.instance_type,
        os_type=node.operating_system,
        spot=node.capacity_type == "spot",
    )
    pricing = plan_compute(facts, book, settings)
    if isinstance(pricing, Unpriced):
        return NodePrice(None, unpriced_reason=pricing.reason)
    return NodePrice(pricing.usd_per_second * 3600.0, pricing.source, pricing.model, pricing.as_of)
