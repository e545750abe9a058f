"""Versioned schema migrations of the totals stores.

- `runner`: `migrate`, the one runner both stores use: the versions missing from
  ``schema_migrations`` applied in order, each once, in one transaction;
- `sqlite`, `postgres`: each backend's `MIGRATIONS` and `LEDGER` (how it records them).

Kept as Python data rather than ``.sql`` files so they ship inside the wheel with no
package-data entry.
"""
