"""The totals sink's ``allocation``: this node's usage, priced, split to transactions
(see `spancost.allocation.reporter`)."""

from __future__ import annotations

from typing import Annotated

from spancost.config import ConfigModel, Number, default
from spancost.settings.node_facts import NodeFactsSettings
from spancost.settings.prices import PricesSettings

__all__ = ["AllocationSettings", "AllocationSpotSettings"]


class AllocationSpotSettings(ConfigModel):
    discount: Annotated[float, Number(ge=0, lt=1)] = 0.7
    """Fraction off the on-demand price on spot, when no live spot price answers."""


class AllocationSettings(ConfigModel):
    """Where usage comes from and how a node-hour is priced (as ``spancost.cost`` prices).

    The weights that split a node are not configurable: ``spancost report``, the guard
    and the export allocate the hours they find changed too, and must split them alike.
    """

    node_facts: NodeFactsSettings | None = None
    """Where usage comes from (required, unless given in code)."""
    prices: PricesSettings = default({})
    spot: AllocationSpotSettings = default({})
