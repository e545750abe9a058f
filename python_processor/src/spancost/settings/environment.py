"""``spancost.environment``'s configuration (see `spancost.plugins.environment`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from spancost.config import AttributeSetting, ConfigModel, NameList, attribute_map, default, invalid
from spancost.vocabulary import normalize_environment

__all__ = ["MISSING_DROP", "MISSING_KEEP", "EnvironmentSettings"]

MISSING_KEEP = "keep"
MISSING_DROP = "drop"


Attributes = Annotated[
    dict[str, AttributeSetting],
    attribute_map("must set at least one attribute"),
    Field(json_schema_extra={"minProperties": 1}),
]


class EnvironmentSettings(ConfigModel):
    """Drops or tags spans by deployment environment."""

    drop: NameList = ()
    """Environments whose spans are dropped (any case)."""
    tag: dict[str, Attributes] = default({})
    """Environment -> attributes set on every span of that environment (overwriting)."""
    missing: str = MISSING_KEEP
    """Spans with no environment: ``keep``, ``drop``, or the environment to assume."""

    @model_validator(mode="after")
    def _environments(self) -> EnvironmentSettings:
        dropped = {normalize_environment(name) for name in self.drop}
        first_spelling: dict[str, str] = {}
        for name in self.tag:
            env = normalize_environment(name)
            if not env:
                raise invalid("environment name must not be empty", "tag", name)
            if env in dropped:
                raise invalid(
                    f"environment {env!r} is also listed in drop; a span is dropped or tagged, "
                    "not both",
                    "tag",
                    name,
                )
            if env in first_spelling:
                raise invalid(
                    f"same environment as tag.{first_spelling[env]} "
                    "(names match ignoring case and surrounding whitespace)",
                    "tag",
                    name,
                )
            first_spelling[env] = name
        if not normalize_environment(self.missing):
            raise invalid(
                "must be 'keep', 'drop' or the name of the environment to assume", "missing"
            )
        return self
