"""Checks that the Python runtime can serve the collector's hot path."""

from __future__ import annotations

from google.protobuf.internal import api_implementation

from spancost.errors import UnsupportedRuntimeError

__all__ = ["check_protobuf_backend"]


def check_protobuf_backend() -> str:
    """Return the protobuf backend in use; refuse the pure-Python one.

    Pure-Python protobuf parses OTLP batches tens of times slower than upb and
    would turn every collector batch into a timeout.
    """
    backend = api_implementation.Type()
    if backend == "python":
        raise UnsupportedRuntimeError(
            "protobuf is running its pure-Python implementation, far too slow for the "
            "sidecar; unset PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION (or set it to 'upb') and "
            "install a protobuf wheel built for this platform"
        )
    return backend
