"""The JSON Schema of every plugin's, sink's and the budgets file's configuration.

Generated from the models (`SETTINGS`) and checked in under ``spancost/schemas/``
(``<name>.schema.json``), for editors and for validating a config before it is
deployed; ``python -m spancost.settings.schemas`` writes them again, and a test
fails while a checked-in schema differs from what the models generate. A schema
says what a config may look like (keys, types, ranges, patterns); a few checks that
span several keys or need the machine (a currency without a rate, a ``ca_file``
that does not exist) are the models' alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from spancost.settings.budgets import BudgetsFileSettings
from spancost.settings.chain import ChainSettings
from spancost.settings.cost import CostSettings
from spancost.settings.environment import EnvironmentSettings
from spancost.settings.totals import TotalsSinkSettings

__all__ = ["DIRECTORY", "SETTINGS", "schema", "schema_path", "text", "write"]

SETTINGS: Final[dict[str, type[BaseModel]]] = {
    "spancost.environment": EnvironmentSettings,
    "spancost.cost": CostSettings,
    "spancost.chain": ChainSettings,
    "spancost.totals": TotalsSinkSettings,
    "budgets": BudgetsFileSettings,
}
"""Plugin and sink names (as the collector's ``plugin:`` names them), and ``budgets``."""

DIRECTORY: Final = Path(__file__).resolve().parent.parent / "schemas"


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `name`'s configuration."""
    generated = SETTINGS[name].model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated}


def schema_path(name: str) -> Path:
    return DIRECTORY / f"{name}.schema.json"


def text(name: str) -> str:
    """The schema as it is checked in."""
    return json.dumps(schema(name), indent=2, sort_keys=True) + "\n"


def write() -> None:
    DIRECTORY.mkdir(exist_ok=True)
    for name in SETTINGS:
        schema_path(name).write_text(text(name))


if __name__ == "__main__":
    write()
