"""What the sync and asyncio clients share: the result types, the requests they build, and
how a stream of exec responses becomes a result."""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Union

from .v1 import checkpoint_pb2, exec_pb2, files_pb2, vm_pb2

#: Bytes per stdin or file message.
CHUNK = 64 * 1024

OutputCallback = Callable[[str], None]
Data = Union[bytes, str]


@dataclass
class Result:
    """How a command ended, with all its output."""

    stdout_bytes: bytes
    stderr_bytes: bytes
    exit_code: int
    #: The signal that killed the command, 0 when it exited.
    signal: int = 0
    #: The command ran past its timeout and was killed.
    timed_out: bool = False

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class Output:
    """A piece of a running command's output."""

    stream: str  # "stdout" or "stderr"
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class Exit:
    """The end of a command."""

    exit_code: int
    signal: int = 0
    timed_out: bool = False


Event = Union[Output, Exit]


@dataclass
class Checkpoint:
    """A saved VM (memory and disk). ``restore``/``fork`` are on the client and on
    :class:`~noid.Vm`."""

    id: str
    vm: str
    label: str
    created_at: datetime
    memory_bytes: int
    disk_bytes: int
    parent_checkpoint: str = ""

    @classmethod
    def _from(cls, c: checkpoint_pb2.Checkpoint) -> "Checkpoint":
        return cls(c.id, c.vm, c.label, _time(c.created_at), c.memory_bytes, c.disk_bytes,
                   c.parent_checkpoint)


@dataclass
class VmInfo:
    """What the server says about a VM."""

    name: str
    id: str
    state: str  # "running", "paused", "hibernated", ...
    cpus: int
    memory_mib: int
    image: str
    address: str
    created_at: datetime
    parent_checkpoint: str
    ports: List[Dict[str, int]] = field(default_factory=list)

    @classmethod
    def _from(cls, v: vm_pb2.Vm) -> "VmInfo":
        state = vm_pb2.VmState.Name(v.state).removeprefix("VM_STATE_").lower()
        ports = [{"host_port": p.host_port, "guest_port": p.guest_port} for p in v.ports]
        return cls(v.name, v.id, state, v.cpus, v.memory_mib, v.image, v.address,
                   _time(v.created_at), v.parent_checkpoint, ports)


def _time(t) -> datetime:
    """An API time (google.protobuf.Timestamp) as an aware datetime in UTC."""
    return t.ToDatetime(tzinfo=timezone.utc)


def as_bytes(data: Data) -> bytes:
    return data.encode() if isinstance(data, str) else data


def exec_start(vm: str, argv: Sequence[str], *, stdin: bool, env: Optional[Dict[str, str]],
               cwd: Optional[str], timeout: Optional[float], user: Optional[str],
               tty: bool = False) -> exec_pb2.ExecRequest:
    if isinstance(argv, str):
        raise TypeError("argv is a list of strings, e.g. ['sh', '-c', 'echo hi']")
    if not argv:
        raise ValueError("argv is empty: give the program to run")
    timeout_ms = 0
    if timeout is not None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        timeout_ms = max(1, int(timeout * 1000))
    start = exec_pb2.ExecStart(vm=vm, argv=list(argv), env=env or {}, cwd=cwd or "",
                               stdin=stdin, tty=tty, timeout_ms=timeout_ms, user=user or "")
    return exec_pb2.ExecRequest(start=start)


def stdin_requests(data: bytes) -> Iterator[exec_pb2.ExecRequest]:
    for i in range(0, len(data), CHUNK):
        yield exec_pb2.ExecRequest(stdin=data[i:i + CHUNK])


def event(resp: exec_pb2.ExecResponse) -> Optional[Event]:
    kind = resp.WhichOneof("msg")
    if kind == "stdout":
        return Output("stdout", resp.stdout)
    if kind == "stderr":
        return Output("stderr", resp.stderr)
    if kind == "exit":
        e = resp.exit
        return Exit(e.code, e.signal, e.timed_out)
    return None


class Collector:
    """Gathers a command's events into a :class:`Result`, calling the output callbacks with
    text as it comes (a character split between two messages is kept for the next one)."""

    def __init__(self, on_stdout: Optional[OutputCallback], on_stderr: Optional[OutputCallback]):
        self._out: List[bytes] = []
        self._err: List[bytes] = []
        self._callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace")
                          for s in ("stdout", "stderr")}
        self.exit: Optional[Exit] = None

    def add(self, ev: Optional[Event]) -> None:
        if isinstance(ev, Output):
            (self._out if ev.stream == "stdout" else self._err).append(ev.data)
            cb = self._callbacks[ev.stream]
            if cb is not None:
                text = self._decoders[ev.stream].decode(ev.data)
                if text:
                    cb(text)
        elif isinstance(ev, Exit):
            self.exit = ev

    def result(self) -> Result:
        if self.exit is None:
            from .errors import Unavailable
            raise Unavailable("the exec stream ended without the command's exit", "UNAVAILABLE")
        return Result(b"".join(self._out), b"".join(self._err), self.exit.exit_code,
                      self.exit.signal, self.exit.timed_out)


def copy_in_requests(vm: str, path: str, mode: int,
                     chunks: Iterator[bytes]) -> Iterator[files_pb2.CopyInRequest]:
    header = files_pb2.CopyInHeader(vm=vm, path=path, mode=mode)
    yield files_pb2.CopyInRequest(header=header)
    for data in chunks:
        yield files_pb2.CopyInRequest(data=data)
    yield files_pb2.CopyInRequest(end=True)


def pieces(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]


def file_pieces(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK)
            if not data:
                return
            yield data
