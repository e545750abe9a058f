"""The checked-in JSON Schemas are what the models generate, and every shipped config
(the collector configs, whose Helm copies are links to them, and the example budgets
files) passes them, checked with an independent validator (jsonschema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from spancost.config import parse
from spancost.settings.schemas import SETTINGS, schema, schema_path, text

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
COLLECTOR_CONFIGS = sorted([*CONFIGS.glob("*.yaml"), *(CONFIGS / "tiers").glob("*.yaml")])
BUDGETS_FILES = [CONFIGS / "guard" / "budgets.yaml"]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_checked_in_schema_is_what_the_models_generate(name: str) -> None:
    assert schema_path(name).read_text() == text(name), (
        "stale: run python -m spancost.settings.schemas"
    )
    jsonschema.Draft202012Validator.check_schema(schema(name))


def plugin_configs(document: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(where, plugin, config) of every spancost plugin and sink in a collector config,
    and of every step of a chain."""
    for name, processor in (document.get("processors") or {}).items():
        if isinstance(processor, dict) and str(processor.get("plugin", "")).startswith("spancost."):
            config = processor.get("config") or {}
            yield f"processors.{name}", processor["plugin"], config
            if processor["plugin"] == "spancost.chain":
                for index, step in enumerate(config.get("steps", [])):
                    yield (
                        f"processors.{name}.steps[{index}]",
                        step["plugin"],
                        step.get("config", {}),
                    )
    for name, extension in (document.get("extensions") or {}).items():
        if name.split("/")[0] == "python" and isinstance(extension, dict):
            for sink, spec in (extension.get("sinks") or {}).items():
                yield f"extensions.{name}.sinks.{sink}", spec["plugin"], spec.get("config") or {}


def shipped() -> list[Any]:
    found = []
    for path in COLLECTOR_CONFIGS:
        for where, plugin, config in plugin_configs(yaml.safe_load(path.read_text())):
            found.append(pytest.param(plugin, config, id=f"{path.name}:{where}"))
    return found


def test_every_shipped_collector_config_is_checked() -> None:
    plugins = {param.values[0] for param in shipped()}
    assert plugins == {"spancost.chain", "spancost.environment", "spancost.cost", "spancost.totals"}
    assert CONFIGS / "local.yaml" in COLLECTOR_CONFIGS


@pytest.mark.parametrize(("plugin", "config"), shipped())
def test_shipped_plugin_configs_pass_their_schema(plugin: str, config: Any) -> None:
    jsonschema.validate(config, schema(plugin), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("path", BUDGETS_FILES, ids=lambda path: path.name)
def test_example_budgets_files_pass_the_schema(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    jsonschema.validate(document, schema("budgets"), cls=jsonschema.Draft202012Validator)
    parse(SETTINGS["budgets"], document)


@pytest.mark.parametrize(
    ("plugin", "config"),
    [
        ("spancost.environment", {"dorp": []}),
        ("spancost.environment", {"drop": ["ci", 3]}),
        ("spancost.cost", {"limits": {"max_duration": 5}}),
        ("spancost.cost", {"spot": {"discount": 1.0}}),
        ("spancost.cost", {"lambda": {"max_memory_unit": "kb"}}),
        ("spancost.chain", {"steps": []}),
        ("spancost.totals", {"max_connections": 0}),
        ("spancost.totals", {"orphan_grace": "10 minutes"}),
        ("budgets", {"budgets": {"x": {"limit": -1, "namespaces": ["a"]}}}),
    ],
)
def test_the_schemas_refuse_what_the_models_refuse(plugin: str, config: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema(plugin), cls=jsonschema.Draft202012Validator)
