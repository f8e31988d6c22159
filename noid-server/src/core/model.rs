//! The records the core works with: VMs and their state, the identity of a VMM process, a
//! VM's network and published ports, checkpoints and users. The store keeps them, the API
//! adapters show them, the backends read what they need of them; none of those defines them.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

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
    /// Saved to disk (`VmRecord::hibernation`) with its VMM stopped: it holds no memory or CPU
    /// until it wakes.
    Hibernated,
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
            VmState::Hibernated => "hibernated",
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
    /// The image its root disk came from (by name); `image_id` is the base it boots.
    #[serde(default = "default_image")]
    pub image: String,
    /// A root disk grown beyond the image's at create; None: the image's size.
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// How many of its checkpoints, and how old, it keeps; unset parts: the server's defaults.
    #[serde(default)]
    pub retention: Retention,
    /// The checkpoint that holds a hibernated VM (its own, not listed as the user's).
    #[serde(default)]
    pub hibernation: Option<String>,
    /// When the VM's time is up (Unix seconds), and what happens then.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub on_expiry: Expiry,
    /// Hibernate the VM after this long without a call to it.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
}

/// What happens to a VM whose time limit passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiry {
    #[default]
    Destroy,
    Hibernate,
}

impl Expiry {
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Destroy => "destroy",
            Expiry::Hibernate => "hibernate",
        }
    }
}

/// A VM's own checkpoint retention. None: the server's default; `Some(0)`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub max_age_secs: Option<u64>,
}

impl Retention {
    /// `self`, with what `update` sets replaced.
    pub fn updated(self, update: Retention) -> Retention {
        Retention {
            keep_last: update.keep_last.or(self.keep_last),
            max_age_secs: update.max_age_secs.or(self.max_age_secs),
        }
    }
}

fn default_image() -> String {
    crate::images::store::DEFAULT.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNet {
    pub ip: Ipv4Addr,
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
    /// The same in milliseconds, which orders checkpoints taken within one second; 0 in
    /// records from before it was kept.
    #[serde(default)]
    pub created_at_ms: i64,
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
    /// The image of the VM it was taken of (by name); its forks run with that image's
    /// settings.
    #[serde(default = "default_image")]
    pub image: String,
    /// The saved state of a hibernated VM: not the user's to list, restore or delete, and
    /// not subject to retention; it goes when the VM wakes or is destroyed.
    #[serde(default)]
    pub hibernation: bool,
}

impl CheckpointRecord {
    /// Newer checkpoints have larger keys; ties (records without milliseconds) go by id.
    pub fn age_order(&self) -> (i64, &str) {
        let ms = if self.created_at_ms > 0 {
            self.created_at_ms
        } else {
            self.created_at.saturating_mul(1000)
        };
        (ms, &self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// SHA-256 of the bearer token, hex.
    pub token_sha256: String,
    pub created_at: i64,
}

/// What a guest needs to know about its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNet {
    pub tap: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<String>,
}

/// How the host reaches the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// A Unix socket that is one end of a virtio-serial port (QEMU), and the transfer disk
    /// for file copies when the VM has one (`noid::guest::transfer_disk`).
    Serial {
        socket: std::path::PathBuf,
        transfer_disk: Option<std::path::PathBuf>,
    },
    /// Firecracker's hybrid vsock: a Unix socket, then `CONNECT <port>`.
    HybridVsock {
        socket: std::path::PathBuf,
        port: u32,
    },
}

/// The VMM that runs a VM, named in records, checkpoints and the API as "qemu/kvm",
/// "qemu/tcg", "firecracker" or "firecracker/jailer".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    QemuKvm,
    QemuTcg,
    Firecracker,
    FirecrackerJailer,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::QemuKvm => "qemu/kvm",
            Backend::QemuTcg => "qemu/tcg",
            Backend::Firecracker => "firecracker",
            Backend::FirecrackerJailer => "firecracker/jailer",
        }
    }

    /// The hypervisor, whatever its accelerator or jail: a VM runs on under another
    /// backend of its family, not of another.
    pub fn family(self) -> &'static str {
        match self {
            Backend::QemuKvm | Backend::QemuTcg => "qemu",
            Backend::Firecracker | Backend::FirecrackerJailer => "firecracker",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [
            Backend::QemuKvm,
            Backend::QemuTcg,
            Backend::Firecracker,
            Backend::FirecrackerJailer,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
        .ok_or_else(|| format!("unknown VMM backend {s:?}"))
    }
}

#[cfg(test)]
impl VmRecord {
    /// A running VM record for unit tests: 1 CPU, 256 MiB, no process, no network.
    pub fn for_test(id: &str, owner: &str, name: &str) -> VmRecord {
        VmRecord {
            id: id.into(),
            name: name.into(),
            owner: owner.into(),
            state: VmState::Running,
            cpus: 1,
            memory_mib: 256,
            created_at: 0,
            backend: Backend::QemuTcg.to_string(),
            image_id: "img1".into(),
            kernel_release: "6.1".into(),
            process: None,
            parent_checkpoint: None,
            net: None,
            state_reason: None,
            request_id: None,
            image: "default".into(),
            disk_bytes: None,
            retention: Default::default(),
            hibernation: None,
            expires_at: None,
            on_expiry: Default::default(),
            idle_timeout_secs: None,
        }
    }
}

#[cfg(test)]
impl CheckpointRecord {
    /// A checkpoint record of VM "vm-1" named `vm`, owned by alice, for unit tests.
    pub fn for_test(id: &str, vm: &str) -> CheckpointRecord {
        CheckpointRecord {
            id: id.into(),
            owner: "alice".into(),
            vm_id: "vm-1".into(),
            vm_name: vm.into(),
            label: String::new(),
            created_at: 0,
            created_at_ms: 0,
            backend: "qemu".into(),
            backend_version: String::new(),
            image_id: String::new(),
            kernel_release: String::new(),
            cpus: 1,
            memory_mib: 256,
            memory_bytes: 0,
            disk_bytes: 0,
            parent: None,
            net_policy: None,
            image: "default".into(),
            hibernation: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn backends_read_back_what_records_hold() {
        for name in ["qemu/kvm", "qemu/tcg", "firecracker", "firecracker/jailer"] {
            let b: Backend = name.parse().unwrap();
            assert_eq!(b.to_string(), name);
        }
        assert_eq!(
            "qemu/kvm".parse::<Backend>().map(Backend::family),
            "qemu/tcg".parse::<Backend>().map(Backend::family)
        );
        assert!("xen".parse::<Backend>().is_err());
    }
}
