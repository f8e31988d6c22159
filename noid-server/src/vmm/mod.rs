//! The VMM port: how the core starts, watches and stops a VM's hypervisor process. One
//! implementation per hypervisor (`qemu` now; Firecracker behind the same trait later).

pub mod accel;
pub mod process;
pub mod qemu;
pub mod qmp;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::store::ProcessId;

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
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The VM's own copy of the root filesystem.
    pub rootfs: PathBuf,
    pub cpus: u32,
    pub memory_mib: u32,
    pub hostname: String,
}

/// How the host reaches the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    /// A Unix socket that is one end of a virtio-serial port (QEMU).
    Serial(PathBuf),
    /// Firecracker's hybrid vsock: a Unix socket, then `CONNECT <port>`.
    HybridVsock { socket: PathBuf, port: u32 },
}

#[async_trait]
pub trait Vmm: Send + Sync {
    /// e.g. "qemu/tcg".
    fn backend(&self) -> String;

    /// Starts the VMM for `spec` as a process that outlives this server; returns once the
    /// process runs (not once the guest has booted).
    async fn start(&self, spec: &BootSpec) -> Result<ProcessId, VmmError>;

    /// Where the agent of a VM whose directory is `dir` answers.
    fn agent_endpoint(&self, dir: &std::path::Path) -> AgentEndpoint;

    /// Whether the VMM process is still the one we started and still running.
    fn is_running(&self, process: &ProcessId) -> bool {
        process::is_alive(process)
    }

    /// Stops the VMM: SIGTERM, then SIGKILL after `grace`. Returns once it is gone.
    async fn stop(&self, process: &ProcessId, grace: Duration) -> Result<(), VmmError> {
        process::terminate(process, grace).await
    }
}
