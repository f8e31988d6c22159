"""The synchronous client: :class:`Noid`, the VMs it returns (:class:`Vm`), their files
(:class:`Files`) and running commands (:class:`Process`)."""
from __future__ import annotations

import os
import queue
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Union

import grpc

from . import _common as c
from ._config import credentials, resolve
from .errors import NoidError, from_code_name, from_rpc_error
from .v1 import checkpoint_pb2, files_pb2, service_pb2, service_pb2_grpc, vm_pb2


class Noid:
    """A connection to a noid server.

    With no arguments the URL and token come from NOID_URL and NOID_TOKEN, else from the
    CLI's config (``noid auth setup``). For an ``https://`` URL the server is verified with
    ``ca_file`` (or NOID_CA_FILE, or the config's ``ca_file``), else with the system's CAs.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *,
                 ca_file: Optional[str] = None) -> None:
        s = resolve(url, token, ca_file)
        if s.tls:
            self._channel = grpc.secure_channel(s.target, credentials(s))
        else:
            self._channel = grpc.insecure_channel(s.target)
        self._stub = service_pb2_grpc.NoidStub(self._channel)
        self._md = (("authorization", "Bearer " + s.token),)

    def _call(self, method: str, request, **kw):
        try:
            return getattr(self._stub, method)(request, metadata=self._md, **kw)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Noid":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def whoami(self) -> str:
        return self._call("WhoAmI", service_pb2.WhoAmIRequest()).user

    def create(self, name: str, *, image: str = "", cpus: int = 0, memory_mib: int = 0,
               disk_bytes: int = 0, ttl_secs: int = 0, request_id: str = "") -> "Vm":
        """Creates and starts VM ``name``; 0 and "" mean the server's defaults."""
        req = vm_pb2.CreateVmRequest(name=name, image=image, cpus=cpus, memory_mib=memory_mib,
                                     disk_bytes=disk_bytes, ttl_secs=ttl_secs,
                                     request_id=request_id)
        return Vm(self, self._call("CreateVm", req))

    def get(self, name: str) -> "Vm":
        return Vm(self, self._call("GetVm", vm_pb2.GetVmRequest(name=name)))

    def list(self) -> List["Vm"]:
        return [Vm(self, v) for v in self._call("ListVms", vm_pb2.ListVmsRequest()).vms]

    def checkpoints(self, vm: str = "") -> List[c.Checkpoint]:
        """The caller's checkpoints (of one VM when ``vm`` is given), newest first."""
        resp = self._call("ListCheckpoints", checkpoint_pb2.ListCheckpointsRequest(vm=vm))
        return [c.Checkpoint._from(x) for x in resp.checkpoints]

    def delete_checkpoint(self, checkpoint_id: str) -> None:
        self._call("DeleteCheckpoint", checkpoint_pb2.DeleteCheckpointRequest(id=checkpoint_id))

    def restore(self, checkpoint: Union[str, c.Checkpoint], as_: Optional[str] = None) -> "Vm":
        """Puts the checkpoint's VM back to it in place, or with ``as_`` forks a new VM."""
        cid = checkpoint.id if isinstance(checkpoint, c.Checkpoint) else checkpoint
        req = checkpoint_pb2.RestoreRequest(checkpoint_id=cid, new_name=as_ or "")
        return Vm(self, self._call("Restore", req))

    def fork(self, checkpoint: Union[str, c.Checkpoint], name: str) -> "Vm":
        return self.restore(checkpoint, as_=name)

    def fork_many(self, checkpoint: Union[str, c.Checkpoint], prefix: str,
                  count: int) -> List[Union["Vm", NoidError]]:
        """``prefix-1`` .. ``prefix-count`` from one checkpoint, concurrently: each VM, or the
        error that kept it from being made."""
        cid = checkpoint.id if isinstance(checkpoint, c.Checkpoint) else checkpoint
        req = checkpoint_pb2.ForkManyRequest(checkpoint_id=cid, prefix=prefix, count=count)
        return [Vm(self, r.vm) if r.HasField("vm") else from_code_name(r.error_code, r.error)
                for r in self._call("ForkMany", req).results]


class Vm:
    """A VM. Used as a context manager, it is destroyed when the block ends."""

    def __init__(self, client: Noid, info: vm_pb2.Vm) -> None:
        self._client = client
        self.name = info.name
        self.info = c.VmInfo._from(info)
        self.files = Files(client, self.name)

    def __repr__(self) -> str:
        return f"Vm({self.name!r}, state={self.info.state!r})"

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def refresh(self) -> c.VmInfo:
        self.info = c.VmInfo._from(self._client._call("GetVm", vm_pb2.GetVmRequest(name=self.name)))
        return self.info

    def destroy(self) -> None:
        self._client._call("DeleteVm", vm_pb2.DeleteVmRequest(name=self.name))

    def pause(self) -> None:
        self.info = c.VmInfo._from(self._client._call("PauseVm", vm_pb2.PauseVmRequest(name=self.name)))

    def resume(self) -> None:
        self.info = c.VmInfo._from(self._client._call("ResumeVm", vm_pb2.ResumeVmRequest(name=self.name)))

    def stop(self) -> None:
        """Shuts the VM down; its disk, address and ports stay for :meth:`start`."""
        self.info = c.VmInfo._from(self._client._call("StopVm", vm_pb2.StopVmRequest(name=self.name)))

    def start(self) -> None:
        """Boots a stopped VM again from its own disk (files kept, processes not)."""
        self.info = c.VmInfo._from(self._client._call("StartVm", vm_pb2.StartVmRequest(name=self.name)))

    def exec(self, argv: Sequence[str], *, stdin: Optional[c.Data] = None,
             env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
             timeout: Optional[float] = None, user: Optional[str] = None,
             on_stdout: Optional[c.OutputCallback] = None,
             on_stderr: Optional[c.OutputCallback] = None) -> c.Result:
        """Runs ``argv`` to its end and returns its output and exit code. A non-zero exit is
        a result, not an exception. ``timeout`` (seconds) kills the command when it passes;
        ``on_stdout``/``on_stderr`` get the output as text while it runs."""
        start = c.exec_start(self.name, argv, stdin=stdin is not None, env=env, cwd=cwd,
                             timeout=timeout, user=user)

        def requests():
            yield start
            if stdin is not None:
                yield from c.stdin_requests(c.as_bytes(stdin))

        collector = c.Collector(on_stdout, on_stderr)
        try:
            for resp in self._client._stub.Exec(requests(), metadata=self._client._md):
                collector.add(c.event(resp))
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return collector.result()

    def spawn(self, argv: Sequence[str], *, stdin: bool = True,
              env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
              timeout: Optional[float] = None, user: Optional[str] = None,
              tty: bool = False) -> "Process":
        """Starts ``argv`` and returns at once: write to its stdin, iterate its output."""
        start = c.exec_start(self.name, argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout,
                             user=user, tty=tty)
        return Process(self._client, start)

    def checkpoint(self, label: str = "") -> c.Checkpoint:
        req = checkpoint_pb2.CreateCheckpointRequest(vm=self.name, label=label)
        return c.Checkpoint._from(self._client._call("CreateCheckpoint", req))

    def checkpoints(self) -> List[c.Checkpoint]:
        return self._client.checkpoints(self.name)

    def restore(self, checkpoint: Union[str, c.Checkpoint]) -> None:
        """Puts this VM back to one of its checkpoints."""
        self.info = self._client.restore(checkpoint).info


class Process:
    """A command started by :meth:`Vm.spawn`. Iterate it for :class:`~noid.Output` pieces;
    then ``exit_code`` is set. ``wait()`` collects the rest into a :class:`~noid.Result`."""

    _END = object()

    def __init__(self, client: Noid, start) -> None:
        self._requests: "queue.Queue" = queue.Queue()
        self._requests.put(start)
        self._responses = client._stub.Exec(self._request_iter(), metadata=client._md)
        self.exit: Optional[c.Exit] = None

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            yield item

    @property
    def exit_code(self) -> Optional[int]:
        return self.exit.exit_code if self.exit else None

    def write(self, data: c.Data) -> None:
        for req in c.stdin_requests(c.as_bytes(data)):
            self._requests.put(req)

    def close_stdin(self) -> None:
        self._requests.put(self._END)

    def signal(self, signum: int) -> None:
        self._requests.put(c.exec_pb2.ExecRequest(signal=signum))

    def resize(self, rows: int, cols: int) -> None:
        self._requests.put(c.exec_pb2.ExecRequest(resize=c.exec_pb2.TtySize(rows=rows, cols=cols)))

    def __iter__(self) -> Iterator[c.Output]:
        # Iterating again goes on where the last iteration stopped. Stdin is closed (the
        # request stream ended) only once the command's stream has ended, not when an
        # iteration is abandoned.
        try:
            for resp in self._responses:
                ev = c.event(resp)
                if isinstance(ev, c.Output):
                    yield ev
                elif isinstance(ev, c.Exit):
                    self.exit = ev
        except grpc.RpcError as e:
            self._requests.put(self._END)
            raise from_rpc_error(e) from None
        self._requests.put(self._END)

    def wait(self, on_stdout: Optional[c.OutputCallback] = None,
             on_stderr: Optional[c.OutputCallback] = None) -> c.Result:
        collector = c.Collector(on_stdout, on_stderr)
        for ev in self:
            collector.add(ev)
        collector.add(self.exit)
        return collector.result()


class Files:
    """Files in a VM's guest, by absolute path."""

    def __init__(self, client: Noid, vm: str) -> None:
        self._client = client
        self._vm = vm

    def write(self, path: str, data: c.Data, mode: int = 0o644) -> int:
        """Writes ``data`` to ``path`` (replacing it); returns the bytes written."""
        reqs = c.copy_in_requests(self._vm, path, mode, c.pieces(c.as_bytes(data)))
        return self._client._call("CopyIn", reqs).bytes_written

    def upload(self, local_path: str, path: str, mode: Optional[int] = None) -> int:
        if mode is None:
            mode = os.stat(local_path).st_mode & 0o7777
        reqs = c.copy_in_requests(self._vm, path, mode, c.file_pieces(local_path))
        return self._client._call("CopyIn", reqs).bytes_written

    def _chunks(self, path: str) -> Iterator[bytes]:
        req = files_pb2.CopyOutRequest(vm=self._vm, path=path)
        try:
            for chunk in self._client._stub.CopyOut(req, metadata=self._client._md):
                yield chunk.data
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def read(self, path: str) -> bytes:
        return b"".join(self._chunks(path))

    def read_text(self, path: str) -> str:
        return self.read(path).decode()

    def download(self, path: str, local_path: str) -> int:
        """Copies ``path`` to ``local_path``; a failed copy leaves no partial file behind."""
        directory = os.path.dirname(os.path.abspath(local_path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".noid-download-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for data in self._chunks(path):
                    f.write(data)
                    size += len(data)
            os.replace(tmp, local_path)
        except BaseException:
            os.unlink(tmp)
            raise
        return size
