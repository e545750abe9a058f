"""The ``spancost sidecar`` gRPC server that the collector's ``python`` processor calls."""
