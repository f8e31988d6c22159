//! Child reaping for the whole guest. As PID 1 the agent inherits every orphan, so one loop
//! reaps all children on SIGCHLD and hands each exit status to whoever spawned that child;
//! orphans it did not spawn are reaped and forgotten.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

#[derive(Clone, Default)]
pub struct Reaper {
    waiting: Arc<Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>>,
}

impl Reaper {
    /// Starts the reaping loop on the current runtime.
    pub fn start() -> io::Result<Self> {
        let reaper = Self::default();
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `cmd` and returns the child with a receiver for its exit status. The child is
    /// registered before the reaping loop can see it exit.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiting = self.waiting.lock().expect("reaper lock");
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiting.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    fn reap_all(&self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid pointer to a local; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let waiter = self.waiting.lock().expect("reaper lock").remove(&pid);
            if let Some(tx) = waiter {
                let _ = tx.send(ExitStatus::from_raw(status));
            }
        }
    }
}
