//! The limits and timeouts the core works within (the `[vm]` section of the server's
//! configuration), and the `[checkpoints]` section.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmLimits {
    pub default_cpus: u32,
    pub max_cpus: u32,
    pub default_memory_mib: u32,
    pub min_memory_mib: u32,
    pub max_memory_mib: u32,
    /// How long a VM may take from start until its agent answers.
    pub boot_timeout_secs: u64,
    /// How long a guest may take to power off on delete before it is terminated.
    pub shutdown_timeout_secs: u64,
    /// An exec client that reads none of its output for this long no longer holds its
    /// command back: the output is dropped, and the client is told so at the end.
    pub exec_stall_secs: u64,
    /// How long a call to a VM's guest agent (starting a command, a resize, the post-restore
    /// step) may wait for its answer before it fails with UNAVAILABLE.
    pub agent_timeout_secs: u64,
    /// Console output kept per VM: the current log and one rotated log of this size each.
    pub console_log_bytes: u64,
    /// Memory the host keeps for itself: a VM is refused when the host's available memory
    /// less this would not hold it.
    pub host_memory_reserve_mib: u64,
    /// Space the data directory keeps free: a VM is refused when its disk copy would eat
    /// into it.
    pub disk_reserve_mib: u64,
    /// Give each VMM a cgroup of its own (memory: the guest's plus `vmm_overhead_mib`; CPU:
    /// its vCPUs' worth plus half a CPU for the VMM's own threads; a cap on processes).
    pub cgroups: bool,
    /// Memory a VMM may use beyond its guest's, in its cgroup.
    pub vmm_overhead_mib: u64,
    /// Start new VMs from a snapshot of a freshly booted VM of the same size instead of
    /// booting them (the first VM of each size boots and makes it).
    pub boot_snapshots: bool,
    /// VMMs kept started and waiting for the state of each boot snapshot in use, so that a
    /// create skips the VMM's own start (0: none). Each costs its process's memory (about
    /// 20 MiB for QEMU) while it waits.
    pub warm_vmms: u32,
    /// When a VM gets a copy-on-write overlay over its image's, snapshot's or checkpoint's
    /// disk instead of a copy of it (only where the VMM can: QEMU with `qemu-img`).
    pub disk_overlays: DiskOverlaysSetting,
    /// A call that needs the guest (exec, a file copy, the console) resumes a VM its user
    /// paused, instead of failing with FAILED_PRECONDITION.
    pub auto_resume: bool,
}

/// The `[vm] disk_overlays` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskOverlaysSetting {
    /// Where the data directory cannot share extents (ext4): there a copy writes the whole
    /// disk, while on btrfs or XFS a reflinked copy costs nothing and a checkpoint of it
    /// shares the VM's own writes too.
    #[default]
    Auto,
    Always,
    Never,
}

impl Default for VmLimits {
    fn default() -> Self {
        Self {
            default_cpus: 1,
            max_cpus: 8,
            default_memory_mib: 256,
            min_memory_mib: 128,
            max_memory_mib: 8192,
            boot_timeout_secs: 60,
            shutdown_timeout_secs: 3,
            agent_timeout_secs: 15,
            exec_stall_secs: 30,
            console_log_bytes: 1 << 20,
            host_memory_reserve_mib: 512,
            cgroups: true,
            vmm_overhead_mib: 256,
            disk_reserve_mib: 256,
            boot_snapshots: true,
            warm_vmms: 1,
            disk_overlays: DiskOverlaysSetting::Auto,
            auto_resume: false,
        }
    }
}

/// The `[checkpoints]` section: what is slow, and what is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSettings {
    /// A checkpoint that takes longer than this (seconds) is logged as slow and counted.
    pub slow_secs: f64,
    /// Keep the newest this many checkpoints of each VM; 0 keeps all. A VM may set its own.
    pub keep_last: u32,
    /// Remove checkpoints older than this ("7d", "12h"); empty keeps them. A VM may set its
    /// own.
    #[serde(deserialize_with = "age")]
    pub max_age: Option<std::time::Duration>,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self {
            slow_secs: 1.0,
            keep_last: 0,
            max_age: None,
        }
    }
}

fn age<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("max_age {text:?}: {e} (e.g. \"7d\")")))
}
