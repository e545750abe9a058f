"""Prices and the pure computation of what a span cost.

Nothing in this package but `aws` (boto3) does I/O; `snapshot` reads package
data once. The core (`model`, `compute`, `rules`, `llm`, `fx`) takes data and
returns decisions, so it is tested without a network.
"""
