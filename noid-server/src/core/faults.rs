//! Crash points for the fault tests: `crash_point("checkpoint.saved")` kills the server on the
//! spot (SIGKILL, no clean-up of any kind) when the environment variable `NOID_CRASH_AT` names
//! that point, so a test can check what a crash at each step of each flow leaves behind once
//! the server is started again. Debug builds only: in release builds they are empty.

/// Every crash point, in the order the flows reach them (`noid-server crash-points` prints
/// them for the tests).
pub const CRASH_POINTS: &[&str] = &[
    "create.recorded",
    "create.network_attached",
    "create.vmm_started",
    "create.agent_answered",
    "create.boot_snapshot_saved",
    "create.from_snapshot_started",
    "create.done",
    "checkpoint.paused",
    "checkpoint.saved",
    "checkpoint.published",
    "restore.marked",
    "restore.disk_aside",
    "restore.vmm_started",
    "restore.done",
    "hibernate.saved",
    "hibernate.recorded",
    "fork.recorded",
    "fork.vmm_started",
    "fork.done",
    "delete.marked",
    "delete.vmm_stopped",
    "delete.files_removed",
    "stop.vmm_stopped",
    "start.launched",
    "port.recorded",
    "copy_in.sent",
];

#[cfg(debug_assertions)]
pub fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    debug_assert!(CRASH_POINTS.contains(&name), "unlisted crash point {name}");
    if AT
        .get_or_init(|| std::env::var("NOID_CRASH_AT").ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("[WARN] crash point {name}: the server kills itself");
        // SAFETY: kill with our own pid has no memory effects; it does not return.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn crash_point(_name: &str) {}
