"""The sink keeps its naming config in the store, so that every reader names and charges
as the sink does: ``spancost report``, the guard and the export open the store without
the sink's config (`open_store(url)`), and must not read a namespace-charged store as if
traces were charged whole to their root, nor allocate an hour's untraced workloads to no
domain when it is their turn to allocate it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from spancost.plugins.totals import TotalsSink
from spancost.store.base import AllocationStore, StoreError, TotalsStore
from spancost.store.open import NAMING_SETTING, open_store, save_naming, saved_naming
from spancost.totals.naming import TotalsConfig
from tests.allocation_data import (
    EXPECTED,
    HOUR,
    NODE,
    NODE_PRICE,
    NOW,
    PODS,
    hand_case_spans,
    write_spans,
)
from tests.pg import create_database

SINK_NAMING = {
    "transaction": {"attribute": "business.transaction"},
    "domains": {
        "owner": {
            "attribute": "k8s.namespace.name",
            "domains": {"shop": "retail", "data": "storage"},
        }
    },
    "orphan_grace": "10m",
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database's URL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'totals.db'}"
    server: str = request.getfixturevalue("pg_server")
    return create_database(server, "naming")


def migrated(url: str) -> TotalsStore:
    store = open_store(url)
    store.migrate()
    return store


def test_a_setting_is_kept_and_replaced(url: str) -> None:
    store = migrated(url)
    try:
        assert store.setting("x") is None
        assert store.save_setting("x", "one", NOW) is None
        assert store.save_setting("x", "two", NOW) == "one"
        assert store.setting("x") == "two"
    finally:
        store.close()


def test_a_store_not_migrated_keeps_none(url: str) -> None:
    store = open_store(url)  # a reader of a database no sink has migrated yet
    try:
        assert store.setting(NAMING_SETTING) is None
        assert saved_naming(store) is None
    finally:
        store.close()


def test_save_naming_says_when_it_replaced_another(url: str) -> None:
    store = migrated(url)
    try:
        assert save_naming(store, {**SINK_NAMING, "database_url": "kept out"}, NOW) is False
        assert json.loads(store.setting(NAMING_SETTING) or "") == SINK_NAMING
        assert save_naming(store, SINK_NAMING, NOW) is False  # the same again
        assert save_naming(store, {"transaction": {"attribute": "route"}}, NOW) is True
    finally:
        store.close()


def test_a_naming_config_that_does_not_parse_is_an_error(url: str) -> None:
    store = migrated(url)
    store.save_setting(NAMING_SETTING, json.dumps({"domains": {"owner": {}}}), NOW)
    store.close()
    with pytest.raises(StoreError, match="naming config that does not parse"):
        open_store(url)


def _sink(url: str) -> TotalsSink:
    return TotalsSink({"database_url": url, **SINK_NAMING}, clock=lambda: NOW)


def test_the_sink_keeps_its_naming_and_a_reader_uses_it(url: str) -> None:
    sink = _sink(url)
    sink.close()
    reader = open_store(url)
    try:
        config = reader.config  # what the reader names and charges by
        assert config.owner_attribute == "k8s.namespace.name"
        assert config.domains_by_owner == {"shop": "retail", "data": "storage"}
        assert config.orphan_grace == timedelta(minutes=10)
    finally:
        reader.close()


def test_a_reader_allocates_an_hour_as_the_sink_would(url: str) -> None:
    """The hour is the reader's to allocate (the sink reported usage, then stopped): its
    untraced workload is charged to its namespace's domain all the same, and the
    spend by domain is the sink's."""
    sink = _sink(url)
    sink.close()
    writer = open_store(url)  # opened as the sink left it: its config
    assert isinstance(writer, AllocationStore)
    try:
        write_spans(writer, hand_case_spans())
        writer.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    finally:
        writer.close()
    reader = open_store(url)
    assert isinstance(reader, AllocationStore)
    try:
        assert reader.allocate() == 1
        spend = reader.allocated_domain_spend(HOUR, HOUR + timedelta(minutes=59))
    finally:
        reader.close()
    assert spend == pytest.approx(
        {
            "retail": EXPECTED[("transaction", "checkout")] + EXPECTED[("transaction", "search")],
            "storage": EXPECTED[("untraced", "StatefulSet/postgres")],
        }
    )


def test_an_explicit_config_wins(url: str) -> None:
    _sink(url).close()
    store = open_store(url, TotalsConfig())
    try:
        assert store.config.owner_attribute is None
    finally:
        store.close()
