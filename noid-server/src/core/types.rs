//! Domain types of the core API. The API adapters translate the generated proto types to and
//! from these; no generated type reaches the core.

use std::collections::HashMap;
use std::time::Duration;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User(pub String);

#[derive(Debug, Clone, Default)]
pub struct CreateVm {
    pub name: String,
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
    /// None: the server's default policy.
    pub net_policy: Option<noid::netpolicy::NetPolicy>,
    /// The client's id for this create, which makes retrying it safe.
    pub request_id: Option<String>,
    /// The image its disk comes from; None: `default`.
    pub image: Option<String>,
    /// Grow the root disk to this size (at least the image's); None: the image's size.
    pub disk_bytes: Option<u64>,
    pub retention: crate::core::model::Retention,
    /// Time limit from now; None: none.
    pub ttl_secs: Option<u64>,
    pub on_expiry: crate::core::model::Expiry,
    /// Hibernate after this long without a call; None: never.
    pub idle_timeout_secs: Option<u64>,
}

/// A restore of a checkpoint: in place, or into a new VM (a fork).
#[derive(Debug, Clone, Default)]
pub struct Restore {
    pub checkpoint_id: String,
    /// A fork's name; None restores the checkpoint's own VM in place.
    pub new_name: Option<String>,
    /// The VM's network policy; None keeps the VM's own (in place) or the source's (fork).
    pub net_policy: Option<noid::netpolicy::NetPolicy>,
    /// For a fork, the client's id that makes retrying it safe.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u32,
    pub cols: u32,
}

/// One command to run in a guest.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: HashMap<String, String>,
    pub cwd: Option<String>,
    /// Keep stdin open for `ExecInput::Stdin`.
    pub stdin: bool,
    pub tty: Option<TtySize>,
    pub timeout: Option<Duration>,
    /// Run as this guest user ("name", "uid", "name:group"); None: the image's, or root.
    pub user: Option<String>,
}

/// What a client sends to a running command.
#[derive(Debug, Clone)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    CloseStdin,
    Signal(i32),
    Resize(TtySize),
}

/// What a running command reports, in order; `Exit` is last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Started { pid: u32 },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitStatus),
}

/// An exec session: a command that runs detached in the guest, its output kept there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u32,
    pub argv: Vec<String>,
    pub tty: bool,
    pub pid: u32,
    /// Seconds since the Unix epoch, by the guest's clock.
    pub started_at: i64,
    /// Set once the command has ended.
    pub exit: Option<ExitStatus>,
    pub buffered_bytes: u64,
    pub dropped_bytes: u64,
}

/// What an attached client of a session receives, in order; `Exit` is last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// At most this much output was dropped before what follows.
    Dropped(u64),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitStatus),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// -1 when killed by a signal.
    pub code: i32,
    /// 0 when the command exited.
    pub signal: i32,
    pub timed_out: bool,
}

/// Facts about the server for `GetServerInfo`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub backend: String,
    pub image_id: String,
    pub kernel_release: String,
    pub default_cpus: u32,
    pub max_cpus: u32,
    pub default_memory_mib: u32,
    pub min_memory_mib: u32,
    pub max_memory_mib: u32,
}
