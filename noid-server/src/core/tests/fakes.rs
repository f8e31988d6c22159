//! Fakes of the core's ports for unit tests of the flows above them: a VMM whose processes
//! are entries in a set, and an agent that answers (or not) as told. The store is the real
//! one (sled in a temporary directory); the image is a directory of small files.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::core::model::{AgentEndpoint, Backend, ProcessId};
use crate::core::ports::agent::*;
use crate::core::ports::vmm::{BootSpec, RunState, SavedFile, VmHandle, Vmm, VmmError};
use crate::core::types::{ExecInput, ExecSpec, TtySize};
use crate::core::CoreError;
use crate::core::SessionInfo;

/// Processes are numbers in `running`; `start` fails while `fail_start` is set.
#[derive(Default)]
pub struct FakeVmm {
    pub running: Mutex<HashSet<u32>>,
    next_pid: AtomicU32,
    pub fail_start: AtomicBool,
    pub starts: AtomicU32,
}

impl FakeVmm {
    /// A process of this VMM that runs, as a crash might have left it.
    pub fn spawn(&self) -> ProcessId {
        let pid = 4_000_000 + self.next_pid.fetch_add(1, Ordering::SeqCst);
        self.running.lock().unwrap().insert(pid);
        ProcessId { pid, start_time: 1 }
    }

    pub fn is_running_pid(&self, pid: u32) -> bool {
        self.running.lock().unwrap().contains(&pid)
    }

    pub fn alive(&self) -> usize {
        self.running.lock().unwrap().len()
    }
}

#[async_trait]
impl Vmm for FakeVmm {
    fn backend(&self) -> Backend {
        Backend::QemuTcg
    }

    fn version(&self) -> String {
        "1".into()
    }

    async fn start(&self, spec: &BootSpec) -> Result<ProcessId, VmmError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        if self.fail_start.load(Ordering::SeqCst) {
            return Err(VmmError::Start("told to fail".into()));
        }
        assert!(
            spec.rootfs.is_file(),
            "the disk is in place before the VMM starts"
        );
        Ok(self.spawn())
    }

    fn console_socket(&self, dir: &Path) -> std::path::PathBuf {
        dir.join("console.sock")
    }

    fn agent_endpoint(&self, dir: &Path) -> AgentEndpoint {
        AgentEndpoint::Serial {
            socket: dir.join("agent.sock"),
            transfer_disk: None,
        }
    }

    fn is_running(&self, process: &ProcessId) -> bool {
        self.running.lock().unwrap().contains(&process.pid)
    }

    fn vm<'a>(&'a self, _: &Path) -> Box<dyn VmHandle + 'a> {
        Box::new(FakeVm)
    }

    async fn restore(&self, _: &BootSpec, _: &Path) -> Result<ProcessId, VmmError> {
        Err(VmmError::Control("not in the fake".into()))
    }

    /// The fake guest never powers off by itself.
    async fn wait_exit(&self, process: &ProcessId, _: Duration) -> bool {
        !self.is_running(process)
    }

    async fn stop(&self, process: &ProcessId, _: Duration) -> Result<(), VmmError> {
        self.running.lock().unwrap().remove(&process.pid);
        Ok(())
    }
}

/// A running fake VM: runs, pauses and resumes; saves nothing.
struct FakeVm;

#[async_trait]
impl VmHandle for FakeVm {
    async fn run_state(&self) -> Result<RunState, VmmError> {
        Ok(RunState::Running)
    }

    async fn pause(&self) -> Result<(), VmmError> {
        Ok(())
    }

    async fn resume(&self) -> Result<(), VmmError> {
        Ok(())
    }

    async fn save_state(&self, _: &Path) -> Result<Vec<SavedFile>, VmmError> {
        Err(VmmError::Control("not in the fake".into()))
    }
}

/// An agent that answers health checks while `up` is set, and nothing else.
pub struct FakeAgent {
    up: Arc<AtomicBool>,
}

#[async_trait]
impl GuestAgent for FakeAgent {
    fn hang_up(&self) {}

    fn reopen(&self) {}

    fn expect_boot(&self) {}

    async fn health(&self, _: Duration) -> Result<AgentHealth, AgentError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(AgentError::Unreachable("the fake guest is down".into()));
        }
        Ok(AgentHealth {
            version: "fake".into(),
            kernel_release: "fake".into(),
            protocol: noid::AGENT_PROTOCOL,
        })
    }

    async fn exec(
        &self,
        _: ExecSpec,
        _: BoxStream<'static, ExecInput>,
    ) -> Result<ExecEvents, AgentError> {
        Err(AgentError::Unreachable("not in the fake".into()))
    }

    async fn write_file(
        &self,
        _: FileTarget,
        _: Upload,
    ) -> Result<Result<(String, u64), CoreError>, AgentError> {
        Err(AgentError::Unreachable("not in the fake".into()))
    }

    async fn read_file(&self, _: String) -> Result<FileChunks, AgentError> {
        Err(AgentError::Unreachable("not in the fake".into()))
    }

    async fn post_restore(&self, _: PostRestore) -> Result<(), AgentError> {
        Ok(())
    }

    async fn settle(&self, _: Duration, _: Duration) -> Result<bool, AgentError> {
        Ok(true)
    }

    async fn resize_console(&self, _: TtySize) -> Result<(), AgentError> {
        Ok(())
    }

    async fn shutdown(&self, _: Duration) -> Result<(), AgentError> {
        Ok(())
    }

    async fn start_session(&self, _: ExecSpec) -> Result<SessionInfo, AgentError> {
        Err(AgentError::Unreachable(
            "the fake guest has no sessions".into(),
        ))
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, AgentError> {
        Ok(Vec::new())
    }

    async fn attach_session(
        &self,
        _: u32,
        _: BoxStream<'static, ExecInput>,
    ) -> Result<SessionEvents, AgentError> {
        Err(AgentError::Unreachable(
            "the fake guest has no sessions".into(),
        ))
    }

    async fn kill_session(&self, _: u32, _: i32) -> Result<SessionInfo, AgentError> {
        Err(AgentError::Unreachable(
            "the fake guest has no sessions".into(),
        ))
    }
}

/// Makes `FakeAgent`s that answer while `up` is set.
pub struct FakeAgents {
    pub up: Arc<AtomicBool>,
}

impl AgentConnector for FakeAgents {
    fn agent(&self, _: AgentEndpoint, _: Duration) -> Arc<dyn GuestAgent> {
        Arc::new(FakeAgent {
            up: Arc::clone(&self.up),
        })
    }
}
