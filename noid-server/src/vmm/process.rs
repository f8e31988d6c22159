//! Host processes by identity: pid plus start time from /proc, so that a recycled pid is never
//! signalled by mistake.

use std::time::Duration;

use crate::core::model::ProcessId;

use super::VmmError;

/// Start time of `pid` in clock ticks since boot, with its state letter, from /proc/PID/stat;
/// None when there is no such process, an error when /proc cannot be read (the server out of
/// file descriptors, say), which says nothing about the process.
fn stat(pid: u32) -> std::io::Result<Option<(char, u64)>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let parse = || {
        // The command name may contain spaces and parentheses: fields start after the last ')'.
        let rest = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first()?.chars().next()?;
        // Field 22 of the full line is the start time; `rest` starts at field 3.
        let start = fields.get(19)?.parse().ok()?;
        Some((state, start))
    };
    Ok(parse())
}

/// Identity of a running process.
pub fn identify(pid: u32) -> Option<ProcessId> {
    stat(pid)
        .ok()
        .flatten()
        .map(|(_, start_time)| ProcessId { pid, start_time })
}

/// The pid in a pid file, if there is one.
pub fn read_pid_file(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The running process named by the pid file of a VM whose directory is `dir`. The pid file
/// may be stale: only a process whose command line names `dir` is the VM's.
pub fn find_by_pid_file(pid_file: &std::path::Path, dir: &std::path::Path) -> Option<ProcessId> {
    let pid = read_pid_file(pid_file)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(&dir.display().to_string())
        .then(|| identify(pid))
        .flatten()
        .filter(is_alive)
}

/// Whether the process still runs (a zombie does not count). A zombie that is our child (the
/// server is a child subreaper, so daemonized VMMs it started are) is reaped on the way. When
/// /proc cannot be read the process counts as running: a VM is never declared dead for want
/// of a file descriptor.
pub fn is_alive(p: &ProcessId) -> bool {
    match stat(p.pid) {
        Err(e) => {
            tracing::warn!("cannot tell whether process {} runs: {e}", p.pid);
            true
        }
        Ok(Some((state, start))) if start == p.start_time => {
            if state == 'Z' {
                let mut status = 0;
                // SAFETY: waitpid on one pid with a pointer to a local; WNOHANG never blocks,
                // and a pid that is not our child just yields ECHILD.
                unsafe { libc::waitpid(p.pid as i32, &mut status, libc::WNOHANG) };
            }
            state != 'Z' && state != 'X'
        }
        _ => false,
    }
}

/// Reaps the zombie children of this server whose command name is `comm` (as /proc shows
/// it: at most 15 bytes), except `keep`. A VMM that daemonizes by forking twice leaves its
/// middle process to the server (a subreaper): it exits at once and waits as a zombie that no
/// one else will ever wait for.
pub fn reap_zombies_named(comm: &str, keep: &[u32]) {
    let me = std::process::id();
    let comm: String = comm.chars().take(15).collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if keep.contains(&pid) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ..."
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let mut rest = text[close + 1..].split_whitespace();
        let (state, ppid) = (rest.next(), rest.next().and_then(|p| p.parse::<u32>().ok()));
        if text[open + 1..close] == comm && state == Some("Z") && ppid == Some(me) {
            let mut status = 0;
            // SAFETY: waitpid on one pid with a pointer to a local; WNOHANG never blocks.
            unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        }
    }
}

/// Sets the CPU priority (nice) of every thread of process `pid` (Linux keeps one per
/// thread); a thread that is gone is skipped.
pub fn set_nice(pid: u32, nice: i32) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        {
            // SAFETY: setpriority with integer arguments only.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
        }
    }
}

/// Makes this process the reaper of its orphaned descendants (daemonized VMMs), so they do
/// not linger as zombies under an init that does not reap.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn signal(p: &ProcessId, sig: i32) {
    if is_alive(p) {
        // SAFETY: kill has no memory effects; the identity check above guards against reuse.
        unsafe { libc::kill(p.pid as i32, sig) };
    }
}

async fn wait_gone(p: &ProcessId, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while is_alive(p) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Waits up to `limit` for the process to exit on its own.
pub async fn wait_exit(p: &ProcessId, limit: Duration) -> bool {
    wait_gone(p, limit).await
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait for it to go.
pub async fn terminate(p: &ProcessId, grace: Duration) -> Result<(), VmmError> {
    signal(p, libc::SIGTERM);
    if wait_gone(p, grace).await {
        return Ok(());
    }
    signal(p, libc::SIGKILL);
    if wait_gone(p, Duration::from_secs(5)).await {
        Ok(())
    } else {
        Err(VmmError::Control(format!(
            "process {} did not exit after SIGKILL",
            p.pid
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identifies_and_terminates_a_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = identify(child.id()).unwrap();
        assert!(is_alive(&id));
        let stale = ProcessId {
            pid: id.pid,
            start_time: id.start_time + 1,
        };
        assert!(
            !is_alive(&stale),
            "a different start time is another process"
        );
        let waiter = std::thread::spawn(move || child.wait());
        terminate(&id, Duration::from_secs(2)).await.unwrap();
        waiter.join().unwrap().unwrap();
        assert!(!is_alive(&id));
    }
}
