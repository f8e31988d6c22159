from google.protobuf import timestamp_pb2 as _timestamp_pb2
from noid.v1 import vm_pb2 as _vm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Checkpoint(_message.Message):
    __slots__ = ("id", "vm", "label", "created_at", "memory_bytes", "disk_bytes", "backend", "parent_checkpoint")
    ID_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PARENT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    id: str
    vm: str
    label: str
    created_at: _timestamp_pb2.Timestamp
    memory_bytes: int
    disk_bytes: int
    backend: str
    parent_checkpoint: str
    def __init__(self, id: _Optional[str] = ..., vm: _Optional[str] = ..., label: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., memory_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., backend: _Optional[str] = ..., parent_checkpoint: _Optional[str] = ...) -> None: ...

class CreateCheckpointRequest(_message.Message):
    __slots__ = ("vm", "label")
    VM_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    vm: str
    label: str
    def __init__(self, vm: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("vm", "page_size", "page_token")
    VM_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    vm: str
    page_size: int
    page_token: str
    def __init__(self, vm: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints", "next_page_token")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[Checkpoint]
    next_page_token: str
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[Checkpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteCheckpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteCheckpointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("checkpoint_id", "new_name", "network_policy", "request_id")
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    new_name: str
    network_policy: _vm_pb2.NetworkPolicy
    request_id: str
    def __init__(self, checkpoint_id: _Optional[str] = ..., new_name: _Optional[str] = ..., network_policy: _Optional[_Union[_vm_pb2.NetworkPolicy, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ForkManyRequest(_message.Message):
    __slots__ = ("checkpoint_id", "prefix", "count", "network_policy")
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NETWORK_POLICY_FIELD_NUMBER: _ClassVar[int]
    checkpoint_id: str
    prefix: str
    count: int
    network_policy: _vm_pb2.NetworkPolicy
    def __init__(self, checkpoint_id: _Optional[str] = ..., prefix: _Optional[str] = ..., count: _Optional[int] = ..., network_policy: _Optional[_Union[_vm_pb2.NetworkPolicy, _Mapping]] = ...) -> None: ...

class ForkResult(_message.Message):
    __slots__ = ("name", "vm", "error_code", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VM_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    vm: _vm_pb2.Vm
    error_code: str
    error: str
    def __init__(self, name: _Optional[str] = ..., vm: _Optional[_Union[_vm_pb2.Vm, _Mapping]] = ..., error_code: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ForkManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ForkResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ForkResult, _Mapping]]] = ...) -> None: ...
