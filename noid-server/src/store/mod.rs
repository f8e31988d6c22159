//! Metadata that must survive a restart: VM records and users. `Store` is the port the core
//! uses; `SledStore` is its implementation. Every write is flushed before it returns, so what
//! the API reports as done is on disk.

mod sled_store;

pub use sled_store::SledStore;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("metadata store: {0}")]
    Backend(String),
    #[error("metadata store holds a record it cannot read: {0}")]
    Corrupt(String),
}

/// Lifecycle state of a VM record. `Creating`, `Restoring` and `Deleting` mark a flow in
/// progress: a server that restarts finds them and undoes or finishes the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Creating,
    Running,
    /// The VMM runs but the guest's vCPUs do not (`VmRecord::state_reason` says why).
    Paused,
    Stopped,
    /// Being put back to a checkpoint in place.
    Restoring,
    Deleting,
}

impl VmState {
    /// The state's name as users see it (CLI, REST, messages).
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopped => "stopped",
            VmState::Restoring => "restoring",
            VmState::Deleting => "deleting",
        }
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a host process: pid plus start time (clock ticks since boot), so a recycled
/// pid is never mistaken for our VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub state: VmState,
    pub cpus: u32,
    pub memory_mib: u32,
    pub created_at: i64,
    pub backend: String,
    pub image_id: String,
    pub kernel_release: String,
    pub process: Option<ProcessId>,
    #[serde(default)]
    pub parent_checkpoint: Option<String>,
    /// The VM's network, when networking is enabled.
    #[serde(default)]
    pub net: Option<VmNet>,
    /// Why the VM is in its state, when that is not plain (e.g. paused by an I/O error).
    #[serde(default)]
    pub state_reason: Option<String>,
    /// The client's id of the request that created the VM, for retries.
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNet {
    pub ip: std::net::Ipv4Addr,
    pub mac: String,
    pub tap: String,
    #[serde(default)]
    pub ports: Vec<PortMap>,
    /// What the VM may reach; records from before policies existed get the open default.
    #[serde(default)]
    pub policy: noid::netpolicy::NetPolicy,
}

/// A published port: TCP to the host's `host` port reaches the guest's `guest` port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub host: u16,
    pub guest: u16,
}

/// A checkpoint of a VM: its files live in `checkpoints/<vm_id>/<id>/` with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub id: String,
    pub owner: String,
    pub vm_id: String,
    pub vm_name: String,
    pub label: String,
    pub created_at: i64,
    pub backend: String,
    pub backend_version: String,
    pub image_id: String,
    pub kernel_release: String,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Size of the saved memory and device state.
    pub memory_bytes: u64,
    /// Apparent size of the disk copy.
    pub disk_bytes: u64,
    /// The checkpoint the VM was itself restored from, if any.
    pub parent: Option<String>,
    /// The VM's network policy at the checkpoint: what its forks get unless told otherwise.
    #[serde(default)]
    pub net_policy: Option<noid::netpolicy::NetPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// SHA-256 of the bearer token, hex.
    pub token_sha256: String,
    pub created_at: i64,
}

pub trait Store: Send + Sync {
    /// Inserts a new VM; `Conflict` when its owner already has a VM of that name.
    fn insert_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    /// Replaces an existing VM record.
    fn update_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    fn remove_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    fn find_vm(&self, owner: &str, name: &str) -> Result<Option<VmRecord>, StoreError>;
    /// All VMs, or one owner's, sorted by name.
    fn list_vms(&self, owner: Option<&str>) -> Result<Vec<VmRecord>, StoreError>;

    /// Inserts (or, when rebuilt from a manifest, replaces) a checkpoint record.
    fn put_checkpoint(&self, c: &CheckpointRecord) -> Result<(), StoreError>;
    fn get_checkpoint(&self, id: &str) -> Result<Option<CheckpointRecord>, StoreError>;
    fn remove_checkpoint(&self, id: &str) -> Result<(), StoreError>;
    /// All checkpoints, or one owner's, newest first.
    fn list_checkpoints(&self, owner: Option<&str>) -> Result<Vec<CheckpointRecord>, StoreError>;

    /// Leases the first of `candidates` that is free to `vm_id`; None when all are taken.
    fn allocate_lease(
        &self,
        vm_id: &str,
        candidates: &[std::net::Ipv4Addr],
    ) -> Result<Option<std::net::Ipv4Addr>, StoreError>;
    fn release_lease(&self, ip: std::net::Ipv4Addr) -> Result<(), StoreError>;
    /// Every lease: address and VM id.
    fn leases(&self) -> Result<Vec<(std::net::Ipv4Addr, String)>, StoreError>;

    /// Inserts a user; `Conflict` when the name is taken.
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Replaces a user's token hash.
    fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    fn user_by_token_hash(&self, sha256: &str) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
}
