"""spancost: prices every span flowing through an OpenTelemetry Collector.

This package is the Python half of the otelcol-spancost distribution: the
`spancost sidecar` gRPC server that the collector's `python` processor calls,
the plugin API (`spancost.plugin`) and the built-in plugins (`spancost.plugins`).
"""

from importlib import metadata

# The installed distribution is the single source of the version; the package
# is only ever run installed (`pip install ./python_processor`, editable or not).
__version__ = metadata.version("spancost")

__all__ = ["__version__"]
