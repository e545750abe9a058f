from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_PROCESSOR: _ClassVar[Kind]
    KIND_SINK: _ClassVar[Kind]
KIND_PROCESSOR: Kind
KIND_SINK: Kind

class ConfigureRequest(_message.Message):
    __slots__ = ("instance", "plugin", "config_json", "kind")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    instance: str
    plugin: str
    config_json: str
    kind: Kind
    def __init__(self, instance: _Optional[str] = ..., plugin: _Optional[str] = ..., config_json: _Optional[str] = ..., kind: _Optional[_Union[Kind, str]] = ...) -> None: ...

class ConfigureResponse(_message.Message):
    __slots__ = ("plugin_version", "warnings", "ownership", "needs_owner")
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    NEEDS_OWNER_FIELD_NUMBER: _ClassVar[int]
    plugin_version: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    ownership: Ownership
    needs_owner: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, plugin_version: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., ownership: _Optional[_Union[Ownership, _Mapping]] = ..., needs_owner: _Optional[_Iterable[str]] = ...) -> None: ...

class Ownership(_message.Message):
    __slots__ = ("keys", "unprocessed", "unprocessed_event", "trusted_key")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    UNPROCESSED_FIELD_NUMBER: _ClassVar[int]
    UNPROCESSED_EVENT_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_KEY_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    unprocessed: _containers.RepeatedCompositeFieldContainer[Attribute]
    unprocessed_event: PluginEvent
    trusted_key: str
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., unprocessed: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., unprocessed_event: _Optional[_Union[PluginEvent, _Mapping]] = ..., trusted_key: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("sinks",)
    SINKS_FIELD_NUMBER: _ClassVar[int]
    sinks: _containers.RepeatedCompositeFieldContainer[SinkStats]
    def __init__(self, sinks: _Optional[_Iterable[_Union[SinkStats, _Mapping]]] = ...) -> None: ...

class SinkStats(_message.Message):
    __slots__ = ("sink", "counts", "gauges", "unavailable")
    SINK_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    sink: str
    counts: _containers.RepeatedCompositeFieldContainer[PluginEvent]
    gauges: _containers.RepeatedCompositeFieldContainer[Gauge]
    unavailable: int
    def __init__(self, sink: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[PluginEvent, _Mapping]]] = ..., gauges: _Optional[_Iterable[_Union[Gauge, _Mapping]]] = ..., unavailable: _Optional[int] = ...) -> None: ...

class Gauge(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ProcessTracesRequest(_message.Message):
    __slots__ = ("instance", "traces")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TRACES_FIELD_NUMBER: _ClassVar[int]
    instance: str
    traces: bytes
    def __init__(self, instance: _Optional[str] = ..., traces: _Optional[bytes] = ...) -> None: ...

class ProcessTracesResponse(_message.Message):
    __slots__ = ("traces", "changes", "events")
    TRACES_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    traces: bytes
    changes: BatchChanges
    events: _containers.RepeatedCompositeFieldContainer[PluginEvent]
    def __init__(self, traces: _Optional[bytes] = ..., changes: _Optional[_Union[BatchChanges, _Mapping]] = ..., events: _Optional[_Iterable[_Union[PluginEvent, _Mapping]]] = ...) -> None: ...

class BatchChanges(_message.Message):
    __slots__ = ("attributes", "drop", "doubles")
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    DOUBLES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeChange]
    drop: _containers.RepeatedCompositeFieldContainer[SpanRange]
    doubles: _containers.RepeatedCompositeFieldContainer[DoubleColumn]
    def __init__(self, attributes: _Optional[_Iterable[_Union[AttributeChange, _Mapping]]] = ..., drop: _Optional[_Iterable[_Union[SpanRange, _Mapping]]] = ..., doubles: _Optional[_Iterable[_Union[DoubleColumn, _Mapping]]] = ...) -> None: ...

class DoubleColumn(_message.Message):
    __slots__ = ("key", "spans", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    spans: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, key: _Optional[str] = ..., spans: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class SpanRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class AttributeChange(_message.Message):
    __slots__ = ("start", "end", "spans", "remove", "set")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    spans: _containers.RepeatedScalarFieldContainer[int]
    remove: _containers.RepeatedScalarFieldContainer[str]
    set: _containers.RepeatedCompositeFieldContainer[Attribute]
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., spans: _Optional[_Iterable[int]] = ..., remove: _Optional[_Iterable[str]] = ..., set: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("key", "string_value", "bool_value", "int_value", "double_value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    string_value: str
    bool_value: bool
    int_value: int
    double_value: float
    def __init__(self, key: _Optional[str] = ..., string_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ...) -> None: ...

class PluginEvent(_message.Message):
    __slots__ = ("event", "reason", "spans")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    event: str
    reason: str
    spans: int
    def __init__(self, event: _Optional[str] = ..., reason: _Optional[str] = ..., spans: _Optional[int] = ...) -> None: ...
