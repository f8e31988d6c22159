//! Child reaping for the whole guest. As PID 1 the agent inherits every orphan, so one loop
//! reaps all children on SIGCHLD and hands each exit status to whoever spawned that child;
//! orphans it did not spawn are reaped and forgotten.
//!
//! Spawning and reaping exclude each other (one lock): a command that fails to exec (E2BIG,
//! ENOEXEC) is a child that std reaps itself inside `spawn`, and a `waitpid(-1)` in between
//! would take that child from it.

use std::collections::HashMap;
use std::io;
#[cfg(test)]
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

type Waiting = HashMap<i32, oneshot::Sender<ExitStatus>>;

#[derive(Clone, Default)]
pub struct Reaper {
    waiting: Arc<Mutex<Waiting>>,
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

    /// The table of spawned children. Nothing panics while it is held, but should anything
    /// ever, the table is still right: a poisoned lock is taken over, not given up.
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns `cmd` and returns the child with a receiver for its exit status. The child is
    /// registered before the reaping loop can see it exit.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiting = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        waiting.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    fn reap_all(&self) {
        loop {
            let mut waiting = self.lock();
            let mut status = 0;
            // SAFETY: waitpid with a valid pointer to a local; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(tx) = waiting.remove(&pid) {
                let _ = tx.send(ExitStatus::from_raw(status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands that cannot exec (an argument list too long for the kernel) while the
    /// reaping loop runs: every spawn fails cleanly, none panics, and spawning still works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failed_execs_race_the_reaping_loop_harmlessly() {
        let reaper = Reaper::start().unwrap();
        let huge = "x".repeat(256 * 1024);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (reaper, huge) = (reaper.clone(), huge.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                for _ in 0..25 {
                    let mut cmd = Command::new("/bin/true");
                    cmd.args(std::iter::repeat_n(&huge, 16));
                    // Take std's fork-and-exec path, as the static agent in the guest does
                    // (posix_spawn reaps its failed child without std's check).
                    // SAFETY: the closure calls nothing at all between fork and exec.
                    unsafe { cmd.pre_exec(|| Ok(())) };
                    let e = reaper.spawn(&mut cmd).unwrap_err();
                    assert_eq!(e.raw_os_error(), Some(libc::E2BIG), "{e}");
                    // Children that exit at once, for the loop to reap meanwhile.
                    let (_, exit) = reaper.spawn(&mut Command::new("/bin/true")).unwrap();
                    drop(exit);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (_, exit) = reaper.spawn(&mut Command::new("/bin/false")).unwrap();
        assert_eq!(exit.await.unwrap().code(), Some(1));
    }
}
