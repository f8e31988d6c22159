//! Request bodies of the Firecracker v1.16 API that noid sends, field for field as the
//! OpenAPI spec (`firecracker-v1.16.1.yaml`) defines them. Optional fields are left out
//! rather than sent empty.

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub struct MachineConfiguration {
    pub vcpu_count: u32,
    pub mem_size_mib: u32,
}

#[derive(Debug, Serialize)]
pub struct BootSource {
    pub kernel_image_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
    pub boot_args: String,
}

#[derive(Debug, Serialize)]
pub struct Drive {
    pub drive_id: String,
    pub is_root_device: bool,
    pub is_read_only: bool,
    pub path_on_host: String,
}

#[derive(Debug, Serialize)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    pub guest_mac: String,
}

#[derive(Debug, Serialize)]
pub struct Vsock {
    pub guest_cid: u32,
    pub uds_path: String,
}

/// `PUT /entropy`: a virtio-rng device; every field is optional.
#[derive(Debug, Serialize)]
pub struct EntropyDevice {}

#[derive(Debug, Serialize)]
pub enum ActionType {
    InstanceStart,
}

#[derive(Debug, Serialize)]
pub struct InstanceActionInfo {
    pub action_type: ActionType,
}

/// `PATCH /vm`'s state.
#[derive(Debug, Serialize)]
pub enum VmState {
    Paused,
    Resumed,
}

#[derive(Debug, Serialize)]
pub struct Vm {
    pub state: VmState,
}

#[derive(Debug, Serialize)]
pub enum SnapshotType {
    Full,
}

#[derive(Debug, Serialize)]
pub struct SnapshotCreateParams {
    pub snapshot_type: SnapshotType,
    pub snapshot_path: String,
    pub mem_file_path: String,
}

#[derive(Debug, Serialize)]
pub enum MemoryBackendType {
    File,
}

#[derive(Debug, Serialize)]
pub struct MemoryBackend {
    pub backend_type: MemoryBackendType,
    pub backend_path: String,
}

#[derive(Debug, Serialize)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

#[derive(Debug, Serialize)]
pub struct VsockOverride {
    pub uds_path: String,
}

#[derive(Debug, Serialize)]
pub struct SnapshotLoadParams {
    pub snapshot_path: String,
    pub mem_backend: MemoryBackend,
    pub resume_vm: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_overrides: Vec<NetworkOverride>,
    pub vsock_override: VsockOverride,
}

/// `GET /`'s `InstanceInfo.state`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum InstanceState {
    #[serde(rename = "Not started")]
    NotStarted,
    Running,
    Paused,
}

/// The part of `GET /`'s `InstanceInfo` that noid reads.
#[derive(Debug, Deserialize)]
pub struct InstanceInfo {
    pub state: InstanceState,
}
