//! The guest agent port: what the core asks of the agent inside a VM, in the core's own
//! types. `agent::RemoteAgent` implements it over the agent's gRPC protocol; `AgentConnector`
//! makes one for a VM from where its VMM says the agent answers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use thiserror::Error;

use crate::core::error::CoreError;
use crate::core::model::{AgentEndpoint, GuestNet};
use crate::core::types::{ExecEvent, ExecInput, ExecSpec, SessionEvent, SessionInfo, TtySize};

#[derive(Debug, Error)]
pub enum AgentError {
    /// No answer: the guest is not up (yet), gone, or the connection broke.
    #[error("{0}")]
    Unreachable(String),
    /// The agent answered with a refusal.
    #[error("{message}")]
    Rejected { kind: Rejection, message: String },
}

/// Why the agent refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    InvalidArgument,
    NotFound,
    /// Not allowed, or not possible in the guest's present state.
    FailedPrecondition,
    ResourceExhausted,
    /// The guest could not do it now (e.g. lost data on the way); a retry may work.
    Unavailable,
    Other,
}

/// What the agent reports about itself.
#[derive(Debug, Clone)]
pub struct AgentHealth {
    pub version: String,
    pub kernel_release: String,
    /// `noid::AGENT_PROTOCOL` of the agent's build.
    pub protocol: u32,
}

/// What a guest learns after a restore: the time, fresh entropy, its name and network.
#[derive(Debug, Clone)]
pub struct PostRestore {
    pub unix_nanos: i64,
    pub entropy: Vec<u8>,
    pub hostname: String,
    pub net: Option<GuestNet>,
}

/// A file to write in the guest.
#[derive(Debug, Clone)]
pub struct FileTarget {
    pub path: String,
    pub mode: u32,
    /// The file's name when `path` is a directory in the guest.
    pub name_in_dir: String,
}

pub type ExecEvents = BoxStream<'static, Result<ExecEvent, AgentError>>;
pub type SessionEvents = BoxStream<'static, Result<SessionEvent, AgentError>>;
pub type FileChunks = BoxStream<'static, Result<Vec<u8>, AgentError>>;
/// A client's bytes for a file; an error abandons the copy.
pub type Upload = BoxStream<'static, Result<Vec<u8>, CoreError>>;

#[async_trait]
pub trait GuestAgent: Send + Sync {
    /// Hangs up the connection and keeps new ones from being made until `reopen`; calls in
    /// flight fail, calls made meanwhile wait.
    fn hang_up(&self);
    /// Lets the agent be reached again after `hang_up`.
    fn reopen(&self);
    /// The guest is booting from scratch: until it first answers, a connection waits for it
    /// rather than hanging up and trying again (no stale session can be holding the channel).
    fn expect_boot(&self);
    async fn health(&self, timeout: Duration) -> Result<AgentHealth, AgentError>;
    /// Starts `spec` in the guest; `input` feeds it, the returned stream reports it.
    async fn exec(
        &self,
        spec: ExecSpec,
        input: BoxStream<'static, ExecInput>,
    ) -> Result<ExecEvents, AgentError>;
    /// Writes `data` to `target`; returns where the file went and its size. When `data`
    /// fails the copy is abandoned, nothing in the guest changes, and its error is returned.
    async fn write_file(
        &self,
        target: FileTarget,
        data: Upload,
    ) -> Result<Result<(String, u64), CoreError>, AgentError>;
    /// The bytes of the file at `path`; the agent stops reading when the stream is dropped.
    async fn read_file(&self, path: String) -> Result<FileChunks, AgentError>;
    /// The guest's step after a restore; no deadline of its own (the caller gives one).
    async fn post_restore(&self, facts: PostRestore) -> Result<(), AgentError>;
    /// Waits until the guest has been quiet for `quiet` after its boot (nothing else runnable,
    /// waiting on I/O or starting), at most `within`; says whether it settled (an agent that
    /// does not know the call says no at once).
    async fn settle(&self, quiet: Duration, within: Duration) -> Result<bool, AgentError>;
    async fn resize_console(&self, size: TtySize) -> Result<(), AgentError>;
    /// Asks the guest to power off; waits at most `timeout` for the answer.
    async fn shutdown(&self, timeout: Duration) -> Result<(), AgentError>;
    /// Starts `spec` as an exec session (detached; its output kept in the guest).
    async fn start_session(&self, spec: ExecSpec) -> Result<SessionInfo, AgentError>;
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, AgentError>;
    /// Attaches to session `id`: its kept output, then live output until it exits; `input`
    /// feeds it. The session runs on when the returned stream is dropped.
    async fn attach_session(
        &self,
        id: u32,
        input: BoxStream<'static, ExecInput>,
    ) -> Result<SessionEvents, AgentError>;
    /// Signals session `id`'s process group (0: SIGTERM).
    async fn kill_session(&self, id: u32, signal: i32) -> Result<SessionInfo, AgentError>;
}

/// Makes the handle of a VM's agent, which connects on first use (and again after a break);
/// each call waits at most `timeout` for the agent's answer unless it says otherwise.
pub trait AgentConnector: Send + Sync {
    fn agent(&self, endpoint: AgentEndpoint, timeout: Duration) -> Arc<dyn GuestAgent>;
}

impl From<AgentError> for CoreError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Unreachable(m) => CoreError::Unavailable(m),
            AgentError::Rejected { kind, message } => match kind {
                Rejection::InvalidArgument => CoreError::InvalidArgument(message),
                Rejection::NotFound => {
                    CoreError::NotFound(crate::core::error::Thing::InGuest, message)
                }
                Rejection::FailedPrecondition => CoreError::FailedPrecondition(message),
                Rejection::ResourceExhausted => CoreError::ResourceExhausted(message),
                Rejection::Unavailable => CoreError::Unavailable(message),
                Rejection::Other => CoreError::Internal(format!("guest agent: {message}")),
            },
        }
    }
}
