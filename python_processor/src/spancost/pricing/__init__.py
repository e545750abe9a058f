"""Prices and the pure computation of what a span cost.

The sources do I/O: `aws`, `aws_client`, `aws_refresh`, `aws_spot`, `aws_spot_history`
(boto3), `fx_fetch` (an FX rates document over https); `snapshot` reads package data
once. The live ones fetch in the background through one `refresher.Refresher` (a
thread over `schedule`, the one backoff), the AWS ones into a `live_cache.LiveCache`.
The core (`model`, `compute`, `rules`, `llm`, `fx`, `aws_products`, `facts`,
`schedule`) takes data and returns decisions, so it is tested without a network, and
imports no network client (tests/test_totals_imports.py keeps it so, and the refresher
and the live cache too; `llm`'s price library brings its own, unused).
"""
