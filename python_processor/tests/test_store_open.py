"""`spancost.store.open`: which store a database URL names."""

from __future__ import annotations

from pathlib import Path

import pytest

from spancost.store.base import StoreError
from spancost.store.open import data_dir, describe_url, open_store
from spancost.store.sqlite import SQLiteStore


def test_no_url_opens_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    store = open_store(None, directory=directory)
    try:
        assert isinstance(store, SQLiteStore)
        store.migrate()
        assert (directory / "totals.db").is_file()
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        store.close()


@pytest.mark.parametrize("prefix", ["sqlite:///", "sqlite:"])
def test_a_sqlite_url_names_the_file(tmp_path: Path, prefix: str) -> None:
    target = tmp_path / "x.db"
    url = prefix + str(target).lstrip("/") if prefix == "sqlite:///" else prefix + str(target)
    store = open_store(url)
    try:
        store.migrate()
        assert target.is_file()
    finally:
        store.close()


def test_an_unknown_scheme_is_refused_without_quoting_the_url() -> None:
    with pytest.raises(StoreError, match="'mysql' is not understood") as caught:
        open_store("mysql://user:hunter2@db/x")
    assert "hunter2" not in str(caught.value)


def test_an_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="cannot connect") as caught:
        open_store("postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=1")
    assert "hunter2" not in str(caught.value)


def test_describe_url_masks_the_password(tmp_path: Path) -> None:
    assert "hunter2" not in describe_url("postgresql://u:hunter2@h/db")
    assert describe_url(None, tmp_path) == f"sqlite:{tmp_path / 'totals.db'}"


def test_data_dir_precedence() -> None:
    assert data_dir({"SPANCOST_DATA_DIR": "/a", "XDG_DATA_HOME": "/b"}) == Path("/a")
    assert data_dir({"XDG_DATA_HOME": "/b"}) == Path("/b/spancost")
    assert data_dir({}).name == "spancost"
