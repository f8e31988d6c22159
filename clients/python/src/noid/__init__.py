"""The Python SDK for noid: create microVMs, run commands in them, move files, checkpoint,
restore and fork them.

    from noid import Noid

    noid = Noid()                       # NOID_URL/NOID_TOKEN, or `noid auth setup`'s config
    with noid.create("scratch") as vm:  # destroyed when the block ends
        r = vm.exec(["sh", "-c", "echo hello"])
        print(r.stdout, r.exit_code)

:mod:`noid.aio` has the same for asyncio (:class:`AsyncNoid`); the generated gRPC stubs are
in :mod:`noid.v1`.
"""
from ._common import Checkpoint, Exit, Output, Result, VmInfo
from .aio import AsyncFiles, AsyncNoid, AsyncProcess, AsyncVm
from .client import Files, Noid, Process, Vm
from .errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition,
                     InvalidArgument, NoidError, NotFound, PermissionDenied, ResourceExhausted,
                     Unauthenticated, Unavailable)

__all__ = [
    "Noid", "Vm", "Files", "Process", "AsyncNoid", "AsyncVm", "AsyncFiles", "AsyncProcess",
    "Result", "Output", "Exit", "Checkpoint", "VmInfo",
    "NoidError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
    "PermissionDenied", "Unauthenticated", "ResourceExhausted", "Unavailable",
    "DeadlineExceeded", "Cancelled",
]
