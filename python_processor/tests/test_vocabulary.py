"""The vocabulary's semantic-convention keys are the conventions' own strings.

spancost.vocabulary.keys copies them (docs/decisions.md, "One vocabulary"); these tests
hold each copy to `opentelemetry-semantic-conventions` (the version pinned in
pyproject.toml), and the keys it says the conventions lack to their absence.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from spancost.vocabulary import keys

_STABLE = "opentelemetry.semconv.attributes"
_INCUBATING = "opentelemetry.semconv._incubating.attributes"

NOT_IN_SEMCONV = (
    keys.AWS_ECS_TASK_CPU,
    keys.AWS_ECS_TASK_MEMORY,
    keys.AWS_EC2_INSTANCE_LIFECYCLE,
    keys.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_FLAT,
    keys.GEN_AI_USAGE_CACHED_TOKENS,
    keys.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT,
)


def _name_of(key: str) -> str:
    names = [name for name in keys.__all__ if getattr(keys, name) == key]
    assert len(names) == 1, names
    return names[0]


def _modules(key: str) -> list[ModuleType]:
    """The conventions' modules for `key`'s namespace: stable first, then incubating."""
    namespace = key.split(".", 1)[0]
    found = []
    for package in (_STABLE, _INCUBATING):
        try:
            found.append(importlib.import_module(f"{package}.{namespace}_attributes"))
        except ModuleNotFoundError:
            continue
    return found


@pytest.mark.parametrize("key", keys.SEMCONV_KEYS)
def test_each_key_is_the_semantic_conventions_constant_of_its_name(key: str) -> None:
    name = _name_of(key)
    values = [getattr(module, name) for module in _modules(key) if hasattr(module, name)]
    assert values, f"{name} is in no module of opentelemetry-semantic-conventions"
    assert set(values) == {key}


@pytest.mark.parametrize("key", NOT_IN_SEMCONV)
def test_the_keys_said_to_be_outside_the_conventions_are(key: str) -> None:
    for module in _modules(key):
        assert key not in vars(module).values(), f"{module.__name__} has {key}: use its name"


def test_every_key_is_listed_once() -> None:
    listed = [getattr(keys, name) for name in keys.__all__ if isinstance(getattr(keys, name), str)]
    assert len(listed) == len(set(listed))
    assert set(keys.SEMCONV_KEYS).isdisjoint(NOT_IN_SEMCONV)
    own = {key for key in listed if key.startswith("cost.")} | {keys.BUSINESS_TRANSACTION}
    assert set(listed) == set(keys.SEMCONV_KEYS) | set(NOT_IN_SEMCONV) | own | {
        keys.GEN_AI_USAGE_PREFIX
    }
