//! The VMM port: how the core starts, watches and stops a VM's hypervisor process (`Vmm`),
//! and controls one running VM (`VmHandle`, from `Vmm::vm`). `vmm::qemu` and
//! `vmm::firecracker` implement it.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::core::model::{AgentEndpoint, Backend, GuestNet, ProcessId};

#[derive(Debug, Error)]
pub enum VmmError {
    #[error("cannot start the VMM: {0}")]
    Start(String),
    #[error("VMM control: {0}")]
    Control(String),
    #[error("VMM I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What to boot, and where the VM's own files live.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// The VM's private directory: disk, sockets, console log, pid file.
    pub dir: PathBuf,
    /// The compressed kernel (QEMU).
    pub kernel: PathBuf,
    /// The same kernel as an uncompressed ELF `vmlinux` (Firecracker).
    pub kernel_elf: PathBuf,
    pub initrd: PathBuf,
    /// The VM's root disk: its own copy of the root filesystem, or an overlay over one.
    pub rootfs: PathBuf,
    pub rootfs_format: DiskFormat,
    pub cpus: u32,
    pub memory_mib: u32,
    pub hostname: String,
    /// The guest's network device and addresses, if it has one.
    pub net: Option<GuestNet>,
    /// The cgroup the VMM runs in (empty: none).
    pub cgroup: crate::vmm::cgroup::Slot,
}

/// How a root disk file is laid out. Always told, never probed from the file: a guest can write
/// anything into a raw disk, a qcow2 header naming a host file too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DiskFormat {
    /// The file system itself, byte for byte.
    #[default]
    Raw,
    /// A qcow2 overlay over a raw disk that it names (`DiskOverlays`).
    Qcow2,
}

/// What a VMM says about its guest's vCPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Stopped by a request (a checkpoint's pause, or one that a crash left behind).
    Paused,
    /// Stopped by the VMM itself because a write to the VM's disk failed on the host (QEMU's
    /// `io-error`, e.g. the host's disk is full); `resume` retries the write.
    IoError,
    /// Anything else, in the VMM's own words.
    Other(String),
}

/// A file of saved VM state, as written by `Vmm::save_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    pub name: String,
    pub bytes: u64,
    /// Its SHA-256, or None for a sparse file (guest memory) whose checksum the core takes
    /// over its data blocks, once the guest runs again.
    pub sha256: Option<String>,
}

/// One VM's running VMM, as `Vmm::vm` hands it out: what the core asks of a running VM.
#[async_trait]
pub trait VmHandle: Send + Sync {
    /// Whether the guest runs.
    async fn run_state(&self) -> Result<RunState, VmmError>;

    /// Freezes the guest's vCPUs (the process keeps running).
    async fn pause(&self) -> Result<(), VmmError>;

    /// Lets a paused guest run again.
    async fn resume(&self) -> Result<(), VmmError>;

    /// Saves the paused VM's memory and device state into files in `out_dir`. The VM stays
    /// paused; on error nothing in `out_dir` is to be trusted.
    async fn save_state(&self, out_dir: &std::path::Path) -> Result<Vec<SavedFile>, VmmError>;

    /// Hangs up the host's connection to the guest agent (`hang_up`) and returns once the VMM
    /// has passed that on to the guest, so that a checkpoint taken next holds an agent about
    /// to wait for a new host rather than one inside a session with a host that a restored
    /// copy will never see.
    async fn hang_up_agent(&self, hang_up: Box<dyn FnOnce() + Send>) -> Result<(), VmmError> {
        hang_up();
        Ok(())
    }
}

#[async_trait]
pub trait Vmm: Send + Sync {
    /// e.g. "qemu/tcg".
    fn backend(&self) -> Backend;

    /// The hypervisor's version; state saved by one version is restored only by the same.
    fn version(&self) -> String;

    /// Starts the VMM for `spec` as a process that outlives this server; returns once the
    /// process runs (not once the guest has booted).
    async fn start(&self, spec: &BootSpec) -> Result<ProcessId, VmmError>;

    /// The Unix socket of the serial console of a VM whose directory is `dir`.
    fn console_socket(&self, dir: &std::path::Path) -> std::path::PathBuf;

    /// Where the agent of a VM whose directory is `dir` answers.
    fn agent_endpoint(&self, dir: &std::path::Path) -> AgentEndpoint;

    /// A running VMM of the VM whose directory is `dir`, found on the host (for a flow that a
    /// crash interrupted before the process was recorded).
    fn find_process(&self, dir: &std::path::Path) -> Option<ProcessId> {
        let _ = dir;
        None
    }

    /// Whether the VMM process is still the one we started and still running.
    fn is_running(&self, process: &ProcessId) -> bool;

    /// Whether the VMM pauses a guest on its own (QEMU does when a disk write fails on the
    /// host), so that running VMs need watching.
    fn pauses_on_its_own(&self) -> bool {
        false
    }

    /// The VM whose directory is `dir`, to control while its VMM runs.
    fn vm<'a>(&'a self, dir: &std::path::Path) -> Box<dyn VmHandle + 'a>;

    /// Starts a VMM for `spec` from state that `save_state` wrote into `state_dir`, and returns
    /// once the guest runs again.
    async fn restore(
        &self,
        spec: &BootSpec,
        state_dir: &std::path::Path,
    ) -> Result<ProcessId, VmmError>;

    /// Whether this VMM can start ahead of need and wait for a snapshot's state
    /// (`start_waiting`, then `load_waiting`).
    fn can_wait_for_state(&self) -> bool {
        false
    }

    /// Starts a VMM for `spec` that waits, with no guest running, for the state in
    /// `state_dir` (a warm VMM): the slow part of `restore`, done before anyone asks. It runs
    /// at a low CPU priority until `set_normal_priority`.
    async fn start_waiting(
        &self,
        spec: &BootSpec,
        state_dir: &std::path::Path,
    ) -> Result<ProcessId, VmmError> {
        let _ = (spec, state_dir);
        Err(VmmError::Start(
            "this VMM cannot wait for a snapshot".into(),
        ))
    }

    /// Loads the state in `state_dir` into the VMM that `start_waiting` started for `spec`
    /// with that state, and returns once the guest runs again (still at the low priority).
    /// On failure the process is left for the caller to stop.
    async fn load_waiting(
        &self,
        spec: &BootSpec,
        state_dir: &std::path::Path,
    ) -> Result<(), VmmError> {
        let _ = (spec, state_dir);
        Err(VmmError::Start(
            "this VMM cannot wait for a snapshot".into(),
        ))
    }

    /// Gives a VMM that `start_waiting` started the normal CPU priority.
    fn set_normal_priority(&self, process: &ProcessId) {
        let _ = process;
    }

    /// Removes what the VMM keeps for the VM whose directory is `dir` outside of it (a jail),
    /// once the VM is gone.
    fn remove_vm_files(&self, dir: &std::path::Path) {
        let _ = dir;
    }

    /// Overlays over read-only raw disks, if this VMM can run a VM on one (`DiskFormat::Qcow2`).
    fn disk_overlays(&self) -> Option<std::sync::Arc<dyn super::disk::DiskOverlays>> {
        None
    }

    /// Who the VMM runs as, when not as root: the owner that VMs' TAPs need (uid, gid).
    fn tap_owner(&self) -> Option<(u32, u32)> {
        None
    }

    /// Why a running guest cannot be paused and resumed as it is (no snapshot in between),
    /// if it cannot.
    fn pause_unsupported(&self) -> Option<&'static str> {
        None
    }

    /// Whether the VMM puts each VM into cgroups of its own making (the jailer does): then
    /// the core makes none.
    fn manages_cgroups(&self) -> bool {
        false
    }

    /// What, beyond `version`, new boot snapshots depend on (how the VMM saves memory).
    fn snapshot_flavor(&self) -> String {
        String::new()
    }

    /// Whether a restored VM keeps using the checkpoint's memory file while it runs (so the
    /// checkpoint must not be deleted under it).
    fn restore_maps_memory(&self) -> bool {
        false
    }

    /// Waits up to `limit` for the VMM to exit on its own (after the guest powered off);
    /// whether it did.
    async fn wait_exit(&self, process: &ProcessId, limit: Duration) -> bool;

    /// Stops the VMM: SIGTERM, then SIGKILL after `grace`. Returns once it is gone.
    async fn stop(&self, process: &ProcessId, grace: Duration) -> Result<(), VmmError>;
}
