"""The asyncio client: :class:`AsyncNoid` and its :class:`AsyncVm`, :class:`AsyncFiles` and
:class:`AsyncProcess`, the same calls as the synchronous ones, awaited."""
from __future__ import annotations

import os
from typing import AsyncIterator, Dict, List, Optional, Sequence, Union

import grpc
import grpc.aio

from . import _common as c
from ._config import credentials, resolve
from .errors import NoidError, from_code_name, from_rpc_error
from .v1 import checkpoint_pb2, exec_pb2, files_pb2, service_pb2, service_pb2_grpc, vm_pb2


class AsyncNoid:
    """A connection to a noid server for asyncio code; see :class:`noid.Noid`."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, *,
                 ca_file: Optional[str] = None) -> None:
        s = resolve(url, token, ca_file)
        if s.tls:
            self._channel = grpc.aio.secure_channel(s.target, credentials(s))
        else:
            self._channel = grpc.aio.insecure_channel(s.target)
        self._stub = service_pb2_grpc.NoidStub(self._channel)
        self._md = (("authorization", "Bearer " + s.token),)

    async def _call(self, method: str, request):
        try:
            return await getattr(self._stub, method)(request, metadata=self._md)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncNoid":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def whoami(self) -> str:
        return (await self._call("WhoAmI", service_pb2.WhoAmIRequest())).user

    async def create(self, name: str, *, image: str = "", cpus: int = 0, memory_mib: int = 0,
                     disk_bytes: int = 0, ttl_secs: int = 0,
                     request_id: str = "") -> "AsyncVm":
        req = vm_pb2.CreateVmRequest(name=name, image=image, cpus=cpus, memory_mib=memory_mib,
                                     disk_bytes=disk_bytes, ttl_secs=ttl_secs,
                                     request_id=request_id)
        return AsyncVm(self, await self._call("CreateVm", req))

    async def get(self, name: str) -> "AsyncVm":
        return AsyncVm(self, await self._call("GetVm", vm_pb2.GetVmRequest(name=name)))

    async def list(self) -> List["AsyncVm"]:
        resp = await self._call("ListVms", vm_pb2.ListVmsRequest())
        return [AsyncVm(self, v) for v in resp.vms]

    async def checkpoints(self, vm: str = "") -> List[c.Checkpoint]:
        resp = await self._call("ListCheckpoints", checkpoint_pb2.ListCheckpointsRequest(vm=vm))
        return [c.Checkpoint._from(x) for x in resp.checkpoints]

    async def delete_checkpoint(self, checkpoint_id: str) -> None:
        await self._call("DeleteCheckpoint",
                         checkpoint_pb2.DeleteCheckpointRequest(id=checkpoint_id))

    async def restore(self, checkpoint: Union[str, c.Checkpoint],
                      as_: Optional[str] = None) -> "AsyncVm":
        cid = checkpoint.id if isinstance(checkpoint, c.Checkpoint) else checkpoint
        req = checkpoint_pb2.RestoreRequest(checkpoint_id=cid, new_name=as_ or "")
        return AsyncVm(self, await self._call("Restore", req))

    async def fork(self, checkpoint: Union[str, c.Checkpoint], name: str) -> "AsyncVm":
        return await self.restore(checkpoint, as_=name)

    async def fork_many(self, checkpoint: Union[str, c.Checkpoint], prefix: str,
                        count: int) -> List[Union["AsyncVm", NoidError]]:
        cid = checkpoint.id if isinstance(checkpoint, c.Checkpoint) else checkpoint
        req = checkpoint_pb2.ForkManyRequest(checkpoint_id=cid, prefix=prefix, count=count)
        resp = await self._call("ForkMany", req)
        return [AsyncVm(self, r.vm) if r.HasField("vm") else from_code_name(r.error_code, r.error)
                for r in resp.results]


class AsyncVm:
    """A VM; ``async with`` destroys it when the block ends."""

    def __init__(self, client: AsyncNoid, info: vm_pb2.Vm) -> None:
        self._client = client
        self.name = info.name
        self.info = c.VmInfo._from(info)
        self.files = AsyncFiles(client, self.name)

    def __repr__(self) -> str:
        return f"AsyncVm({self.name!r}, state={self.info.state!r})"

    async def __aenter__(self) -> "AsyncVm":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.destroy()

    async def refresh(self) -> c.VmInfo:
        info = await self._client._call("GetVm", vm_pb2.GetVmRequest(name=self.name))
        self.info = c.VmInfo._from(info)
        return self.info

    async def stop(self) -> None:
        """Shuts the VM down; its disk, address and ports stay for :meth:`start`."""
        info = await self._client._call("StopVm", vm_pb2.StopVmRequest(name=self.name))
        self.info = c.VmInfo._from(info)

    async def start(self) -> None:
        """Boots a stopped VM again from its own disk (files kept, processes not)."""
        info = await self._client._call("StartVm", vm_pb2.StartVmRequest(name=self.name))
        self.info = c.VmInfo._from(info)

    async def destroy(self) -> None:
        await self._client._call("DeleteVm", vm_pb2.DeleteVmRequest(name=self.name))

    async def exec(self, argv: Sequence[str], *, stdin: Optional[c.Data] = None,
                   env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
                   timeout: Optional[float] = None, user: Optional[str] = None,
                   on_stdout: Optional[c.OutputCallback] = None,
                   on_stderr: Optional[c.OutputCallback] = None) -> c.Result:
        proc = await self.spawn(argv, stdin=stdin is not None, env=env, cwd=cwd,
                                timeout=timeout, user=user)
        if stdin is not None:
            await proc.write(stdin)
            await proc.close_stdin()
        return await proc.wait(on_stdout, on_stderr)

    async def spawn(self, argv: Sequence[str], *, stdin: bool = True,
                    env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
                    timeout: Optional[float] = None, user: Optional[str] = None,
                    tty: bool = False) -> "AsyncProcess":
        start = c.exec_start(self.name, argv, stdin=stdin, env=env, cwd=cwd, timeout=timeout,
                             user=user, tty=tty)
        call = self._client._stub.Exec(metadata=self._client._md)
        proc = AsyncProcess(call)
        await proc._send(start)
        if not stdin:
            await proc.close_stdin()
        return proc

    async def checkpoint(self, label: str = "") -> c.Checkpoint:
        req = checkpoint_pb2.CreateCheckpointRequest(vm=self.name, label=label)
        return c.Checkpoint._from(await self._client._call("CreateCheckpoint", req))

    async def checkpoints(self) -> List[c.Checkpoint]:
        return await self._client.checkpoints(self.name)

    async def restore(self, checkpoint: Union[str, c.Checkpoint]) -> None:
        self.info = (await self._client.restore(checkpoint)).info


class AsyncProcess:
    """A running command: ``async for`` its :class:`~noid.Output`; ``wait()`` for the rest."""

    def __init__(self, call) -> None:
        self._call = call
        self._stdin_open = True
        self.exit: Optional[c.Exit] = None

    async def _send(self, req) -> None:
        try:
            await self._call.write(req)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    @property
    def exit_code(self) -> Optional[int]:
        return self.exit.exit_code if self.exit else None

    async def write(self, data: c.Data) -> None:
        for req in c.stdin_requests(c.as_bytes(data)):
            await self._send(req)

    async def close_stdin(self) -> None:
        if self._stdin_open:
            self._stdin_open = False
            await self._call.done_writing()

    async def signal(self, signum: int) -> None:
        await self._send(exec_pb2.ExecRequest(signal=signum))

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(exec_pb2.ExecRequest(resize=exec_pb2.TtySize(rows=rows, cols=cols)))

    async def __aiter__(self) -> AsyncIterator[c.Output]:
        try:
            async for resp in self._call:
                ev = c.event(resp)
                if isinstance(ev, c.Output):
                    yield ev
                elif isinstance(ev, c.Exit):
                    self.exit = ev
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def wait(self, on_stdout: Optional[c.OutputCallback] = None,
                   on_stderr: Optional[c.OutputCallback] = None) -> c.Result:
        collector = c.Collector(on_stdout, on_stderr)
        async for ev in self:
            collector.add(ev)
        collector.add(self.exit)
        return collector.result()


class AsyncFiles:
    """Files in a VM's guest, by absolute path."""

    def __init__(self, client: AsyncNoid, vm: str) -> None:
        self._client = client
        self._vm = vm

    async def write(self, path: str, data: c.Data, mode: int = 0o644) -> int:
        reqs = c.copy_in_requests(self._vm, path, mode, c.pieces(c.as_bytes(data)))
        return (await self._client._call("CopyIn", reqs)).bytes_written

    async def upload(self, local_path: str, path: str, mode: Optional[int] = None) -> int:
        if mode is None:
            mode = os.stat(local_path).st_mode & 0o7777
        reqs = c.copy_in_requests(self._vm, path, mode, c.file_pieces(local_path))
        return (await self._client._call("CopyIn", reqs)).bytes_written

    async def read(self, path: str) -> bytes:
        req = files_pb2.CopyOutRequest(vm=self._vm, path=path)
        parts = []
        try:
            async for chunk in self._client._stub.CopyOut(req, metadata=self._client._md):
                parts.append(chunk.data)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        return b"".join(parts)

    async def read_text(self, path: str) -> str:
        return (await self.read(path)).decode()
