"""Versioned schema migrations of the server-backed totals stores.

- `postgres`: `MIGRATIONS` of `spancost.store.postgres.PostgresStore`, applied in order,
  each version once, recorded in ``schema_migrations``.

Kept as Python data rather than ``.sql`` files so they ship inside the wheel with no
package-data entry.
"""
