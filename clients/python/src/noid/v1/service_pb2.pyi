from google.protobuf import timestamp_pb2 as _timestamp_pb2
from noid.v1 import vm_pb2 as _vm_pb2
from noid.v1 import exec_pb2 as _exec_pb2
from noid.v1 import checkpoint_pb2 as _checkpoint_pb2
from noid.v1 import files_pb2 as _files_pb2
from noid.v1 import image_pb2 as _image_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("serving", "version")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    version: str
    def __init__(self, serving: bool = ..., version: _Optional[str] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ("image", "cpus", "memory_mib")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    image: str
    cpus: int
    memory_mib: int
    def __init__(self, image: _Optional[str] = ..., cpus: _Optional[int] = ..., memory_mib: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "backend", "image_id", "kernel_release", "default_cpus", "default_memory_mib", "max_cpus", "max_memory_mib", "min_memory_mib", "boot_snapshot_ready")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_RELEASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CPUS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MAX_CPUS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MIN_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    BOOT_SNAPSHOT_READY_FIELD_NUMBER: _ClassVar[int]
    version: str
    backend: str
    image_id: str
    kernel_release: str
    default_cpus: int
    default_memory_mib: int
    max_cpus: int
    max_memory_mib: int
    min_memory_mib: int
    boot_snapshot_ready: bool
    def __init__(self, version: _Optional[str] = ..., backend: _Optional[str] = ..., image_id: _Optional[str] = ..., kernel_release: _Optional[str] = ..., default_cpus: _Optional[int] = ..., default_memory_mib: _Optional[int] = ..., max_cpus: _Optional[int] = ..., max_memory_mib: _Optional[int] = ..., min_memory_mib: _Optional[int] = ..., boot_snapshot_ready: bool = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class ConsoleRequest(_message.Message):
    __slots__ = ("vm", "input", "resize")
    VM_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    vm: str
    input: bytes
    resize: _exec_pb2.TtySize
    def __init__(self, vm: _Optional[str] = ..., input: _Optional[bytes] = ..., resize: _Optional[_Union[_exec_pb2.TtySize, _Mapping]] = ...) -> None: ...

class ConsoleResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: bytes
    def __init__(self, output: _Optional[bytes] = ...) -> None: ...

class StreamLogsRequest(_message.Message):
    __slots__ = ("vm", "follow", "tail", "since", "timestamps")
    VM_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    vm: str
    follow: bool
    tail: int
    since: _timestamp_pb2.Timestamp
    timestamps: bool
    def __init__(self, vm: _Optional[str] = ..., follow: bool = ..., tail: _Optional[int] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., timestamps: bool = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("data", "time")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    time: _timestamp_pb2.Timestamp
    def __init__(self, data: _Optional[bytes] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
