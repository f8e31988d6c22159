from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Egress(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EGRESS_UNSPECIFIED: _ClassVar[Egress]
    EGRESS_ALLOW: _ClassVar[Egress]
    EGRESS_DENY: _ClassVar[Egress]

class VmState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VM_STATE_UNSPECIFIED: _ClassVar[VmState]
    VM_STATE_CREATING: _ClassVar[VmState]
    VM_STATE_RUNNING: _ClassVar[VmState]
    VM_STATE_STOPPED: _ClassVar[VmState]
    VM_STATE_DELETING: _ClassVar[VmState]
    VM_STATE_PAUSED: _ClassVar[VmState]
    VM_STATE_RESTORING: _ClassVar[VmState]
    VM_STATE_HIBERNATED: _ClassVar[VmState]

class Expiry(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPIRY_UNSPECIFIED: _ClassVar[Expiry]
    EXPIRY_DESTROY: _ClassVar[Expiry]
    EXPIRY_HIBERNATE: _ClassVar[Expiry]
EGRESS_UNSPECIFIED: Egress
EGRESS_ALLOW: Egress
EGRESS_DENY: Egress
VM_STATE_UNSPECIFIED: VmState
VM_STATE_CREATING: VmState
VM_STATE_RUNNING: VmState
VM_STATE_STOPPED: VmState
VM_STATE_DELETING: VmState
VM_STATE_PAUSED: VmState
VM_STATE_RESTORING: VmState
VM_STATE_HIBERNATED: VmState
EXPIRY_UNSPECIFIED: Expiry
EXPIRY_DESTROY: Expiry
EXPIRY_HIBERNATE: Expiry

class Vm(_message.Message):
    __slots__ = ("name", "id", "state", "cpus", "memory_mib", "created_at", "backend", "image_id", "kernel_release", "address", "parent_checkpoint", "vmm_pid", "mac", "ports", "network_policy", "state_reason", "image", "checkpoint_retention", "expires_at", "on_expiry", "idle_timeout_secs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    KERNEL_RELEASE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PARENT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    VMM_PID_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_RETENTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ON_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    state: VmState
    cpus: int
    memory_mib: int
    created_at: _timestamp_pb2.Timestamp
    backend: str
    image_id: str
    kernel_release: str
    address: str
    parent_checkpoint: str
    vmm_pid: int
    mac: str
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    network_policy: NetworkPolicy
    state_reason: str
    image: str
    checkpoint_retention: CheckpointRetention
    expires_at: _timestamp_pb2.Timestamp
    on_expiry: Expiry
    idle_timeout_secs: int
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., state: _Optional[_Union[VmState, str]] = ..., cpus: _Optional[int] = ..., memory_mib: _Optional[int] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., backend: _Optional[str] = ..., image_id: _Optional[str] = ..., kernel_release: _Optional[str] = ..., address: _Optional[str] = ..., parent_checkpoint: _Optional[str] = ..., vmm_pid: _Optional[int] = ..., mac: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., network_policy: _Optional[_Union[NetworkPolicy, _Mapping]] = ..., state_reason: _Optional[str] = ..., image: _Optional[str] = ..., checkpoint_retention: _Optional[_Union[CheckpointRetention, _Mapping]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., on_expiry: _Optional[_Union[Expiry, str]] = ..., idle_timeout_secs: _Optional[int] = ...) -> None: ...

class CheckpointRetention(_message.Message):
    __slots__ = ("keep_last", "max_age_secs")
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECS_FIELD_NUMBER: _ClassVar[int]
    keep_last: int
    max_age_secs: int
    def __init__(self, keep_last: _Optional[int] = ..., max_age_secs: _Optional[int] = ...) -> None: ...

class SetCheckpointRetentionRequest(_message.Message):
    __slots__ = ("name", "retention")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    retention: CheckpointRetention
    def __init__(self, name: _Optional[str] = ..., retention: _Optional[_Union[CheckpointRetention, _Mapping]] = ...) -> None: ...

class NetworkPolicy(_message.Message):
    __slots__ = ("egress", "allow", "deny", "isolated")
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    ISOLATED_FIELD_NUMBER: _ClassVar[int]
    egress: Egress
    allow: _containers.RepeatedScalarFieldContainer[str]
    deny: _containers.RepeatedScalarFieldContainer[str]
    isolated: bool
    def __init__(self, egress: _Optional[_Union[Egress, str]] = ..., allow: _Optional[_Iterable[str]] = ..., deny: _Optional[_Iterable[str]] = ..., isolated: bool = ...) -> None: ...

class SetNetworkPolicyRequest(_message.Message):
    __slots__ = ("vm", "policy")
    VM_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    vm: str
    policy: NetworkPolicy
    def __init__(self, vm: _Optional[str] = ..., policy: _Optional[_Union[NetworkPolicy, _Mapping]] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("host_port", "guest_port")
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    GUEST_PORT_FIELD_NUMBER: _ClassVar[int]
    host_port: int
    guest_port: int
    def __init__(self, host_port: _Optional[int] = ..., guest_port: _Optional[int] = ...) -> None: ...

class AddPortRequest(_message.Message):
    __slots__ = ("vm", "host_port", "guest_port")
    VM_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    GUEST_PORT_FIELD_NUMBER: _ClassVar[int]
    vm: str
    host_port: int
    guest_port: int
    def __init__(self, vm: _Optional[str] = ..., host_port: _Optional[int] = ..., guest_port: _Optional[int] = ...) -> None: ...

class RemovePortRequest(_message.Message):
    __slots__ = ("vm", "host_port")
    VM_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    vm: str
    host_port: int
    def __init__(self, vm: _Optional[str] = ..., host_port: _Optional[int] = ...) -> None: ...

class HibernateVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WakeVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StartVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SetTimeLimitsRequest(_message.Message):
    __slots__ = ("name", "ttl_secs", "on_expiry", "idle_timeout_secs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    ON_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    ttl_secs: int
    on_expiry: Expiry
    idle_timeout_secs: int
    def __init__(self, name: _Optional[str] = ..., ttl_secs: _Optional[int] = ..., on_expiry: _Optional[_Union[Expiry, str]] = ..., idle_timeout_secs: _Optional[int] = ...) -> None: ...

class PauseVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateVmRequest(_message.Message):
    __slots__ = ("name", "cpus", "memory_mib", "network_policy", "request_id", "image", "disk_bytes", "checkpoint_retention", "ttl_secs", "on_expiry", "idle_timeout_secs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    NETWORK_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_RETENTION_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    ON_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpus: int
    memory_mib: int
    network_policy: NetworkPolicy
    request_id: str
    image: str
    disk_bytes: int
    checkpoint_retention: CheckpointRetention
    ttl_secs: int
    on_expiry: Expiry
    idle_timeout_secs: int
    def __init__(self, name: _Optional[str] = ..., cpus: _Optional[int] = ..., memory_mib: _Optional[int] = ..., network_policy: _Optional[_Union[NetworkPolicy, _Mapping]] = ..., request_id: _Optional[str] = ..., image: _Optional[str] = ..., disk_bytes: _Optional[int] = ..., checkpoint_retention: _Optional[_Union[CheckpointRetention, _Mapping]] = ..., ttl_secs: _Optional[int] = ..., on_expiry: _Optional[_Union[Expiry, str]] = ..., idle_timeout_secs: _Optional[int] = ...) -> None: ...

class GetVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListVmsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVmsResponse(_message.Message):
    __slots__ = ("vms", "next_page_token")
    VMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    vms: _containers.RepeatedCompositeFieldContainer[Vm]
    next_page_token: str
    def __init__(self, vms: _Optional[_Iterable[_Union[Vm, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteVmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteVmResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
