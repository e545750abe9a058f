"""The configuration of every plugin, sink and the budgets file, as models.

One module per configuration, each only declarations and their checks (pydantic
models over the shared types of `spancost.config`), importing nothing heavy: the
plugins read their settings here and build what they run from them, and
`spancost.settings.schemas` turns the top-level models into the JSON Schemas
checked in under ``schemas/``.
"""
