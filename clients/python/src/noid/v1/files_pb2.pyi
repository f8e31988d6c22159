from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CopyInRequest(_message.Message):
    __slots__ = ("header", "data", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: CopyInHeader
    data: bytes
    end: bool
    def __init__(self, header: _Optional[_Union[CopyInHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., end: bool = ...) -> None: ...

class CopyInHeader(_message.Message):
    __slots__ = ("vm", "path", "mode", "source_name")
    VM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    vm: str
    path: str
    mode: int
    source_name: str
    def __init__(self, vm: _Optional[str] = ..., path: _Optional[str] = ..., mode: _Optional[int] = ..., source_name: _Optional[str] = ...) -> None: ...

class CopyInResponse(_message.Message):
    __slots__ = ("bytes_written", "path")
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    bytes_written: int
    path: str
    def __init__(self, bytes_written: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...

class CopyOutRequest(_message.Message):
    __slots__ = ("vm", "path")
    VM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    vm: str
    path: str
    def __init__(self, vm: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
