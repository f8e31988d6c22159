"""Errors from the noid server, one class per kind of failure.

Every failed call raises a :class:`NoidError` subclass chosen by the gRPC status code, with
the server's message and its machine-readable ``reason`` (``VM_NOT_FOUND``,
``CHECKPOINT_NOT_FOUND``, ``PORT_IN_USE``, ...) from the status's ``google.rpc.ErrorInfo``.
"""
from __future__ import annotations

from typing import Optional

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2


class NoidError(Exception):
    """A call to the noid server failed."""

    def __init__(self, message: str, code: str = "UNKNOWN", reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        #: The gRPC status code's name, e.g. ``"NOT_FOUND"``.
        self.code = code
        #: The server's ErrorInfo reason, e.g. ``"VM_NOT_FOUND"``; empty when it gave none.
        self.reason = reason

    def __str__(self) -> str:
        return self.message


class InvalidArgument(NoidError):
    """The request was malformed: a bad name, size or option."""


class NotFound(NoidError):
    """The VM, checkpoint, image or file does not exist (or is not the caller's)."""


class AlreadyExists(NoidError):
    """A VM (or other thing) of that name exists already."""


class FailedPrecondition(NoidError):
    """The thing is not in a state for the call, e.g. a paused VM or an image in use."""


class PermissionDenied(NoidError):
    """The caller may not do that."""


class Unauthenticated(NoidError):
    """No token, or one the server does not know."""


class ResourceExhausted(NoidError):
    """A limit was reached: VMs per user, memory, disk, ports."""


class Unavailable(NoidError):
    """The server (or the VM's guest) cannot be reached."""


class DeadlineExceeded(NoidError):
    """The call took longer than its deadline."""


class Cancelled(NoidError):
    """The call was cancelled."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}

_CLASS_BY_NAME = {code.name: cls for code, cls in _BY_CODE.items()}


def _reason(trailers) -> str:
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return ""
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason
    return ""


def from_rpc_error(e: grpc.RpcError) -> NoidError:
    """The :class:`NoidError` for a failed gRPC call (sync or asyncio)."""
    code: Optional[grpc.StatusCode] = e.code()  # type: ignore[attr-defined]
    message = e.details() or (code.name if code else "call failed")  # type: ignore[attr-defined]
    trailers = e.trailing_metadata()  # type: ignore[attr-defined]
    cls = _BY_CODE.get(code, NoidError) if code else NoidError
    return cls(message, code.name if code else "UNKNOWN", _reason(trailers))


def from_code_name(code: str, message: str) -> NoidError:
    """The :class:`NoidError` for a status given by name (as ForkMany reports each fork's)."""
    return _CLASS_BY_NAME.get(code, NoidError)(message, code)
