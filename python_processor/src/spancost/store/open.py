"""Open the totals store a database URL names: the one way every command picks a store.

- no URL (None or empty): the embedded default, SQLite at ``<data dir>/totals.db``;
- ``sqlite:///absolute/path.db`` or ``sqlite:relative/path.db``: SQLite at that path;
- ``postgresql://...``, ``postgres://...`` or a libpq ``key=value`` string: PostgreSQL.

The data directory is ``$SPANCOST_DATA_DIR``, else ``$XDG_DATA_HOME/spancost``, else
``~/.local/share/spancost``; it is created (mode 0700) when the SQLite default needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from spancost.errors import ConfigError
from spancost.store.base import StoreError, TotalsStore
from spancost.store.sqlite import SQLiteStore
from spancost.totals.naming import CONFIG_KEYS, TotalsConfig, parse_config

__all__ = [
    "DEFAULT_SQLITE_NAME",
    "NAMING_SETTING",
    "check_url",
    "data_dir",
    "describe_url",
    "open_store",
    "save_naming",
    "saved_naming",
]

DEFAULT_SQLITE_NAME: Final = "totals.db"
_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
_SQLITE_SCHEME: Final = "sqlite:"
NAMING_SETTING: Final = "totals.naming"
"""Where a sink keeps its naming config: who pays, which domains (`save_naming`)."""


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where spancost keeps local state (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("SPANCOST_DATA_DIR"):
        return Path(env["SPANCOST_DATA_DIR"])
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]) / "spancost"
    return Path.home() / ".local" / "share" / "spancost"


def _sqlite_path(url: str | None, directory: Path | None) -> Path | None:
    """The SQLite file `url` names, or None when it names PostgreSQL."""
    if not url:
        return (directory if directory is not None else data_dir()) / DEFAULT_SQLITE_NAME
    if url.startswith(_SQLITE_SCHEME):
        rest = url[len(_SQLITE_SCHEME) :]
        path = rest[2:] if rest.startswith("//") else rest  # sqlite:///abs → /abs
        if not path:
            raise StoreError(f"database URL {url!r} names no SQLite file")
        return Path(path)
    if url.startswith(_POSTGRES_SCHEMES) or "=" in url:
        return None
    scheme = url.split(":", 1)[0] if ":" in url else url[:12]  # never the whole URL: a password
    raise StoreError(
        f"database URL starting {scheme!r} is not understood: use postgresql://...,"
        " sqlite:///path/to/totals.db, or leave it empty for the embedded SQLite store"
    )


def check_url(url: str | None) -> None:
    """Raise `StoreError` if `url` is not a form `open_store` understands (no I/O)."""
    _sqlite_path(url, Path("."))


def describe_url(url: str | None, directory: Path | None = None) -> str:
    """`url` fit for a log line: the SQLite path, or the DSN with its password masked."""
    path = _sqlite_path(url, directory)
    if path is not None:
        return f"sqlite:{path}"
    from spancost.store.postgres_pool import masked_dsn  # noqa: PLC0415 - psycopg, when named

    return masked_dsn(url or "")


def open_store(
    url: str | None,
    config: TotalsConfig | None = None,
    *,
    directory: Path | None = None,
    max_connections: int = 4,
) -> TotalsStore:
    """The store `url` names (see the module docstring), connected but not migrated.

    Without `config` (a reader: ``spancost report``, the guard, the export), the store
    names traces and charges domains by the config the sink saved in it (`save_naming`),
    so that every reader reads what the sink wrote as the sink would; with none saved,
    by the defaults.

    Raises `StoreError` naming the problem (an unknown scheme, an unreachable server,
    a wrong password; never the password itself).
    """
    path = _sqlite_path(url, directory)
    store: TotalsStore
    if path is None:
        # psycopg (about 12 MiB of a sidecar) only for a store that is PostgreSQL.
        from spancost.store.postgres import PostgresStore  # noqa: PLC0415

        store = PostgresStore(url or "", config, max_connections=max_connections)
    else:
        if url is None or not url:
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {path.parent}: {exc}") from exc
        store = SQLiteStore(path, config)
    if config is None:
        try:
            saved = saved_naming(store)
        except StoreError:
            store.close()
            raise
        if saved is not None:
            store.use_config(saved)
    return store


def save_naming(store: TotalsStore, naming: Mapping[str, Any], now: datetime) -> bool:
    """Keep the sink's naming config (its `CONFIG_KEYS`, as written) in `store`, for the
    readers that open it without one; True when it replaced a different one."""
    value = json.dumps(
        {key: naming[key] for key in CONFIG_KEYS if key in naming}, sort_keys=True, default=str
    )
    previous = store.save_setting(NAMING_SETTING, value, now)
    return previous is not None and previous != value


def saved_naming(store: TotalsStore) -> TotalsConfig | None:
    """The naming config a sink kept in `store` (`save_naming`), or None."""
    value = store.setting(NAMING_SETTING)
    if value is None:
        return None
    try:
        return parse_config(json.loads(value))
    except (ValueError, ConfigError) as exc:
        raise StoreError(
            f"the totals store keeps a naming config that does not parse: {exc}"
        ) from exc
