from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfigureRequest(_message.Message):
    __slots__ = ("instance", "plugin", "config_json")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    instance: str
    plugin: str
    config_json: str
    def __init__(self, instance: _Optional[str] = ..., plugin: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class ConfigureResponse(_message.Message):
    __slots__ = ("plugin_version",)
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    plugin_version: str
    def __init__(self, plugin_version: _Optional[str] = ...) -> None: ...

class ProcessTracesRequest(_message.Message):
    __slots__ = ("instance", "traces")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TRACES_FIELD_NUMBER: _ClassVar[int]
    instance: str
    traces: bytes
    def __init__(self, instance: _Optional[str] = ..., traces: _Optional[bytes] = ...) -> None: ...

class ProcessTracesResponse(_message.Message):
    __slots__ = ("traces", "events")
    TRACES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    traces: bytes
    events: _containers.RepeatedCompositeFieldContainer[PluginEvent]
    def __init__(self, traces: _Optional[bytes] = ..., events: _Optional[_Iterable[_Union[PluginEvent, _Mapping]]] = ...) -> None: ...

class PluginEvent(_message.Message):
    __slots__ = ("event", "reason", "spans")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    event: str
    reason: str
    spans: int
    def __init__(self, event: _Optional[str] = ..., reason: _Optional[str] = ..., spans: _Optional[int] = ...) -> None: ...
