from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecRequest(_message.Message):
    __slots__ = ("start", "stdin", "close_stdin", "signal", "resize")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STDIN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    stdin: bytes
    close_stdin: bool
    signal: int
    resize: TtySize
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ..., stdin: _Optional[bytes] = ..., close_stdin: bool = ..., signal: _Optional[int] = ..., resize: _Optional[_Union[TtySize, _Mapping]] = ...) -> None: ...

class ExecStart(_message.Message):
    __slots__ = ("vm", "argv", "env", "cwd", "stdin", "tty", "tty_size", "timeout_ms", "user")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VM_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    TTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    vm: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    stdin: bool
    tty: bool
    tty_size: TtySize
    timeout_ms: int
    user: str
    def __init__(self, vm: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., stdin: bool = ..., tty: bool = ..., tty_size: _Optional[_Union[TtySize, _Mapping]] = ..., timeout_ms: _Optional[int] = ..., user: _Optional[str] = ...) -> None: ...

class TtySize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExecResponse(_message.Message):
    __slots__ = ("started", "stdout", "stderr", "exit")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    started: ExecStarted
    stdout: bytes
    stderr: bytes
    exit: ExecExit
    def __init__(self, started: _Optional[_Union[ExecStarted, _Mapping]] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class ExecStarted(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class ExecExit(_message.Message):
    __slots__ = ("code", "signal", "timed_out")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    code: int
    signal: int
    timed_out: bool
    def __init__(self, code: _Optional[int] = ..., signal: _Optional[int] = ..., timed_out: bool = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("id", "argv", "tty", "pid", "started_at", "exit", "buffered_bytes", "dropped_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    argv: _containers.RepeatedScalarFieldContainer[str]
    tty: bool
    pid: int
    started_at: _timestamp_pb2.Timestamp
    exit: ExecExit
    buffered_bytes: int
    dropped_bytes: int
    def __init__(self, id: _Optional[int] = ..., argv: _Optional[_Iterable[str]] = ..., tty: bool = ..., pid: _Optional[int] = ..., started_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ..., buffered_bytes: _Optional[int] = ..., dropped_bytes: _Optional[int] = ...) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("start",)
    START_FIELD_NUMBER: _ClassVar[int]
    start: ExecStart
    def __init__(self, start: _Optional[_Union[ExecStart, _Mapping]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: str
    def __init__(self, vm: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ...) -> None: ...

class AttachTarget(_message.Message):
    __slots__ = ("vm", "session")
    VM_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    vm: str
    session: int
    def __init__(self, vm: _Optional[str] = ..., session: _Optional[int] = ...) -> None: ...

class AttachSessionRequest(_message.Message):
    __slots__ = ("attach", "stdin", "close_stdin", "signal", "resize")
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STDIN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    attach: AttachTarget
    stdin: bytes
    close_stdin: bool
    signal: int
    resize: TtySize
    def __init__(self, attach: _Optional[_Union[AttachTarget, _Mapping]] = ..., stdin: _Optional[bytes] = ..., close_stdin: bool = ..., signal: _Optional[int] = ..., resize: _Optional[_Union[TtySize, _Mapping]] = ...) -> None: ...

class AttachSessionResponse(_message.Message):
    __slots__ = ("dropped", "stdout", "stderr", "exit")
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    stdout: bytes
    stderr: bytes
    exit: ExecExit
    def __init__(self, dropped: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class KillSessionRequest(_message.Message):
    __slots__ = ("vm", "session", "signal")
    VM_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    vm: str
    session: int
    signal: int
    def __init__(self, vm: _Optional[str] = ..., session: _Optional[int] = ..., signal: _Optional[int] = ...) -> None: ...
