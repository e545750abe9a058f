"""``spancost.chain``'s configuration (see `spancost.plugins.chain`)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field

from spancost.config import ConfigModel, default, invalid, list_of

__all__ = ["CHAIN_PLUGIN", "ChainSettings", "StepSettings"]

CHAIN_PLUGIN: Final = "spancost.chain"


def _not_a_chain(name: str) -> str:
    if name == CHAIN_PLUGIN:
        raise invalid("a chain cannot contain a chain")
    return name


class StepSettings(ConfigModel):
    """One plugin of the chain."""

    plugin: Annotated[str, AfterValidator(_not_a_chain)]
    """The plugin's name (``spancost.environment``); it must answer in the fast form."""
    config: dict[str, Any] = default({})
    """The plugin's own configuration, checked by the plugin."""


def _steps(steps: tuple[StepSettings, ...]) -> tuple[StepSettings, ...]:
    if not steps:
        raise invalid("must be a non-empty list of steps, got list")
    return steps


class ChainSettings(ConfigModel):
    """Several fast-form plugins in one python processor."""

    steps: Annotated[
        tuple[StepSettings, ...],
        list_of("a non-empty list of steps"),
        AfterValidator(_steps),
        Field(json_schema_extra={"minItems": 1}),
    ]
