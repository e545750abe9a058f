"""Words every layer of spancost shares, at the bottom of the house (no spancost import).

- `keys`: every attribute key spancost reads or writes (the semantic conventions',
  spancost's own ``cost.*``, ``business.transaction``);
- `limits`: the numeric bounds beyond which a value is bad data;
- `otlp`: span kinds and flags, and attributes read into plain Python values;
- here: the one form environment names are compared in.

The pricing plugin reads and tags by these words, the totals adapter stores by them,
and the report, the guard and the export filter by them, so an environment named
``Staging`` by a sender, ``staging`` in a budgets file and ``STAGING`` on a command line
are one environment. None of these modules loads protobuf or any I/O client
(tests/test_totals_imports.py).
"""

from __future__ import annotations

__all__ = ["normalize_environment"]


def normalize_environment(name: str) -> str:
    """The form environment names are stored and compared in: trimmed, case-folded."""
    return name.strip().casefold()
