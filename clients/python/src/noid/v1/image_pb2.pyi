from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Image(_message.Message):
    __slots__ = ("name", "id", "source", "created_at", "disk_bytes", "stored_bytes", "kernel_release", "owner", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    KERNEL_RELEASE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    source: str
    created_at: _timestamp_pb2.Timestamp
    disk_bytes: int
    stored_bytes: int
    kernel_release: str
    owner: str
    config: ImageConfig
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., source: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., disk_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., kernel_release: _Optional[str] = ..., owner: _Optional[str] = ..., config: _Optional[_Union[ImageConfig, _Mapping]] = ...) -> None: ...

class ImageConfig(_message.Message):
    __slots__ = ("env", "working_dir", "user", "entrypoint", "cmd")
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    env: _containers.RepeatedScalarFieldContainer[str]
    working_dir: str
    user: str
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    cmd: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, env: _Optional[_Iterable[str]] = ..., working_dir: _Optional[str] = ..., user: _Optional[str] = ..., entrypoint: _Optional[_Iterable[str]] = ..., cmd: _Optional[_Iterable[str]] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteImageRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteImageResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImportImageRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ImportImageHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ImportImageHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportImageHeader(_message.Message):
    __slots__ = ("name", "disk_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    disk_bytes: int
    def __init__(self, name: _Optional[str] = ..., disk_bytes: _Optional[int] = ...) -> None: ...

class BuildImageRequest(_message.Message):
    __slots__ = ("name", "debian_suite", "packages", "disk_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEBIAN_SUITE_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    debian_suite: str
    packages: _containers.RepeatedScalarFieldContainer[str]
    disk_bytes: int
    def __init__(self, name: _Optional[str] = ..., debian_suite: _Optional[str] = ..., packages: _Optional[_Iterable[str]] = ..., disk_bytes: _Optional[int] = ...) -> None: ...

class BuildDockerfileRequest(_message.Message):
    __slots__ = ("header", "context")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    header: BuildDockerfileHeader
    context: bytes
    def __init__(self, header: _Optional[_Union[BuildDockerfileHeader, _Mapping]] = ..., context: _Optional[bytes] = ...) -> None: ...

class BuildDockerfileHeader(_message.Message):
    __slots__ = ("name", "dockerfile", "build_args")
    class BuildArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    BUILD_ARGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dockerfile: str
    build_args: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., dockerfile: _Optional[str] = ..., build_args: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ImageProgress(_message.Message):
    __slots__ = ("log", "image")
    LOG_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    log: str
    image: Image
    def __init__(self, log: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...
