//! The console shim: a small process (`noid-server vmm-shim`) that runs a VMM whose serial
//! console is its stdio (Firecracker) and offers that console on a Unix socket, as QEMU does
//! itself. It outlives the server like the VMM, so a restart of the server loses nothing but
//! the output printed while nobody listened.
//!
//! The shim is the VM's process as the server sees it: it exits when the VMM exits, passes
//! SIGTERM on to it, and the VMM gets SIGKILL if the shim dies (PR_SET_PDEATHSIG).

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to run and where its console and pid go.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    /// Working directory of the VMM.
    pub cwd: PathBuf,
    /// Unix socket to serve the console on.
    pub console: PathBuf,
    /// Where the VMM's own pid is written.
    pub pid_file: PathBuf,
    /// Where the VMM's stderr goes.
    pub log: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl ShimArgs {
    /// The shim's own command line after `vmm-shim`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--cwd".into(),
            self.cwd.clone().into(),
            "--console".into(),
            self.console.clone().into(),
            "--pid-file".into(),
            self.pid_file.clone().into(),
            "--log".into(),
            self.log.clone().into(),
            "--".into(),
            self.program.clone(),
        ];
        a.extend(self.args.iter().cloned());
        a
    }
}

static VMM_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on_sigterm(_: libc::c_int) {
    let pid = VMM_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; pid is the VMM we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// Output kept for the next listener while nobody listens (the first boot messages, or what
/// the guest printed while the server restarted).
const BACKLOG_BYTES: usize = 64 * 1024;

/// The one listener of the console, or the backlog it will get.
#[derive(Default)]
struct Console {
    listener: Option<UnixStream>,
    backlog: std::collections::VecDeque<u8>,
}

impl Console {
    fn write(&mut self, data: &[u8]) {
        if let Some(c) = self.listener.as_mut() {
            // A listener that cannot keep up is dropped rather than stall the guest.
            if c.write_all(data).is_ok() {
                return;
            }
            self.listener = None;
        }
        self.backlog.extend(data);
        let excess = self.backlog.len().saturating_sub(BACKLOG_BYTES);
        self.backlog.drain(..excess);
    }

    fn attach(&mut self, mut conn: UnixStream) {
        let (a, b) = self.backlog.as_slices();
        if conn.write_all(a).and_then(|()| conn.write_all(b)).is_ok() {
            self.backlog.clear();
            self.listener = Some(conn);
        }
    }
}

/// Runs the VMM until it exits; returns its exit code.
pub fn run(args: &ShimArgs) -> io::Result<i32> {
    let _ = std::fs::remove_file(&args.console);
    let listener = UnixListener::bind(&args.console)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)?;
    let mut cmd = Command::new(&args.program);
    cmd.args(&args.args)
        .current_dir(&args.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: prctl with integer arguments only, async-signal-safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        })
    };
    let mut child = cmd.spawn()?;
    VMM_PID.store(child.id() as i32, Ordering::SeqCst);
    // SAFETY: installs a handler that only calls kill(2), which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            pass_on_sigterm as *const () as libc::sighandler_t,
        )
    };
    let tmp = args.pid_file.with_extension("tmp");
    std::fs::write(&tmp, child.id().to_string())?;
    std::fs::rename(&tmp, &args.pid_file)?;

    let client: Arc<Mutex<Console>> = Arc::default();
    let stdin = Arc::new(Mutex::new(child.stdin.take().expect("piped stdin")));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out_client = client.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            out_client.lock().expect("console client").write(&buf[..n]);
        }
    });
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let Ok(mut reader) = conn.try_clone() else {
                continue;
            };
            client.lock().expect("console client").attach(conn);
            let stdin = stdin.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || stdin.lock().expect("stdin").write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let status = child.wait()?;
    let _ = std::fs::remove_file(&args.console);
    Ok(status.code().unwrap_or(1))
}

/// Starts `noid-server vmm-shim` for `args` in a session of its own and returns its pid.
/// The shim is not waited for here: `process::is_alive` reaps it once it has exited.
pub fn spawn(args: &ShimArgs, cgroup: &super::cgroup::Slot) -> io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("vmm-shim")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let cgroup = cgroup.clone();
    // SAFETY: setsid and the cgroup's open/write/close are async-signal-safe between fork and
    // exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            cgroup.enter_before_exec()
        })
    };
    let child = cmd.spawn()?;
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_nobody_read_waits_for_the_next_listener() {
        let mut console = Console::default();
        console.write(b"early ");
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        console.attach(ours);
        console.write(b"late");
        drop(console);
        let mut got = String::new();
        theirs.read_to_string(&mut got).unwrap();
        assert_eq!(got, "early late");

        let mut console = Console::default();
        console.write(&vec![b'x'; BACKLOG_BYTES + 10]);
        assert_eq!(console.backlog.len(), BACKLOG_BYTES);
    }
}
