"""The spancost exception hierarchy.

Everything spancost raises on purpose derives from `SpancostError`. Only the
boundaries (the gRPC servicer, the CLI) turn these into status or exit codes.
"""

from __future__ import annotations


class SpancostError(Exception):
    """Base class of every error spancost raises on purpose."""


class ConfigError(SpancostError):
    """A plugin or component configuration is wrong.

    `key` is the dotted path of the offending key inside the configuration,
    e.g. ``drop[1]`` or ``tag.staging``; an empty key means the configuration as
    a whole. ``str(error)`` is ``config.<key>: <message>``, the form the
    collector shows to users.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"config.{key}: {message}" if key else f"config: {message}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # Pickled as it was made (the sidecar's sinks answer from another process).
        return type(self), (self.key, self.message)


class PluginError(SpancostError):
    """Base class of errors about finding, loading or running a plugin."""


class PluginNotFoundError(PluginError):
    """No installed distribution provides a plugin of that name."""

    def __init__(self, name: str, installed: list[str], group: str = "spancost.processors") -> None:
        self.name = name
        self.installed = installed
        self.group = group
        names = ", ".join(installed) if installed else "none"
        super().__init__(
            f"no plugin named {name!r} in the entry-point group {group!r} (installed: {names})"
        )

    def __reduce__(self) -> tuple[type[PluginNotFoundError], tuple[str, list[str], str]]:
        return type(self), (self.name, self.installed, self.group)


class PluginLoadError(PluginError):
    """A plugin is installed but importing it failed, or it is not a Plugin."""


class PluginFailedError(PluginError):
    """A plugin raised while it was created or while it processed a batch."""


class SidecarError(SpancostError):
    """Base class of errors raised by the sidecar's request handling."""


class InvalidRequestError(SidecarError):
    """A request is malformed (empty instance name, traces that do not parse)."""


class UnknownInstanceError(SidecarError):
    """A batch names a plugin instance this sidecar has not been configured with."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        super().__init__(
            f"unknown plugin instance {instance!r}: call Configure first "
            "(the sidecar may have restarted)"
        )

    def __reduce__(self) -> tuple[type[UnknownInstanceError], tuple[str]]:
        return type(self), (self.instance,)


class UnknownSinkError(SidecarError):
    """An export names a sink this sidecar has not been configured with (or names none
    while several are configured)."""

    def __init__(self, sink: str, configured: list[str]) -> None:
        self.sink = sink
        self.configured = configured
        names = ", ".join(configured) if configured else "none"
        what = f"no sink named {sink!r}" if sink else "the export names no sink"
        super().__init__(
            f"{what} (configured: {names}); set the exporter's header spancost-sink "
            "to a sink configured under the python extension's sinks"
        )

    def __reduce__(self) -> tuple[type[UnknownSinkError], tuple[str, list[str]]]:
        return type(self), (self.sink, self.configured)


class SinkUnavailableError(SpancostError):
    """A sink could not store a batch durably now; nothing of it is acknowledged and
    the sender should retry (the store is down, or not reached yet)."""


class ListenAddressError(SpancostError):
    """A listen address is malformed or not restricted to this host."""


class ServerStartError(SpancostError):
    """The sidecar could not bind or start its gRPC server."""


class UnsupportedRuntimeError(SpancostError):
    """The Python runtime lacks something the sidecar needs (e.g. the upb protobuf backend)."""
