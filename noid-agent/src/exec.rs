//! Running one command for the host: spawn (on pipes or a pseudo-terminal), pump stdin in and
//! stdout/stderr out in order, forward signals and resizes, enforce the timeout, report the exit.
//! A command outlives its stream: when the host goes away (a checkpoint hangs up, the server
//! restarts) it runs on, and its output is dropped. Clients stop commands with `signal`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use noid::agent::v1::{
    exec_request, exec_response, ExecExit, ExecRequest, ExecResponse, ExecStart,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::fdstream::FdStream;
use crate::output::{ExitNotice, OutputPipe};
use crate::reaper::Reaper;

pub type Reply = mpsc::Sender<Result<ExecResponse, Status>>;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn msg(m: exec_response::Msg) -> Result<ExecResponse, Status> {
    Ok(ExecResponse { msg: Some(m) })
}

/// Builds the command from the start message, without spawning it.
pub(crate) fn build_command(start: &ExecStart) -> Result<Command, Status> {
    let (prog, args) = start
        .argv
        .split_first()
        .ok_or_else(|| Status::invalid_argument("argv must not be empty"))?;
    let who = crate::users::resolve(&start.user)?;
    let cwd = if start.cwd.is_empty() {
        crate::toolbox::dir_or_root(&who.home)
    } else {
        &start.cwd
    };
    if !std::path::Path::new(cwd).is_dir() {
        return Err(Status::invalid_argument(format!(
            "working directory {cwd} does not exist in the guest"
        )));
    }
    let mut env: HashMap<String, String> = HashMap::from([
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), who.home.clone()),
        ("USER".into(), who.name.clone()),
        ("SHELL".into(), "/bin/sh".into()),
    ]);
    if start.tty {
        env.insert("TERM".into(), "xterm-256color".into());
    }
    env.extend(start.env.clone());
    let mut cmd = Command::new(prog);
    cmd.args(args).env_clear().envs(env).current_dir(cwd);
    if who.uid != 0 || who.gid != 0 {
        use std::os::unix::process::CommandExt;
        cmd.uid(who.uid).gid(who.gid);
    }
    Ok(cmd)
}

fn spawn_error(prog: &str, e: io::Error) -> Status {
    match e.kind() {
        io::ErrorKind::NotFound => Status::not_found(format!("{prog}: command not found")),
        io::ErrorKind::PermissionDenied => {
            Status::permission_denied(format!("{prog}: permission denied"))
        }
        _ if e.raw_os_error() == Some(libc::E2BIG) => Status::invalid_argument(format!(
            "{prog}: the arguments and environment are too long for the guest kernel (E2BIG)"
        )),
        _ => Status::internal(format!("{prog}: cannot start: {e}")),
    }
}

/// The exit code a shell gives a command that `spawn` could not start: 127 when it is not
/// found, 126 when it cannot be executed. (`spawn_error` alone makes these two codes; a bad
/// request, user or working directory stays an error of the call.)
fn shell_exit_code(status: &Status) -> Option<i32> {
    match status.code() {
        tonic::Code::NotFound => Some(127),
        tonic::Code::PermissionDenied => Some(126),
        _ => None,
    }
}

/// A started command: its process group leader, its exit, and its ends of stdin and of
/// stdout/stderr (`true`: stderr).
pub(crate) struct Spawned {
    pub pid: i32,
    pub exit: tokio::sync::oneshot::Receiver<ExitStatus>,
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub outputs: Vec<(Box<dyn AsyncRead + Send + Unpin>, bool)>,
    /// The pseudo-terminal master, for resizes.
    pub pty: Option<i32>,
}

/// Starts `start` on a pseudo-terminal or on pipes, as it asks.
pub(crate) fn spawn(reaper: &Reaper, start: &ExecStart) -> Result<Spawned, Status> {
    if start.tty {
        spawn_tty(reaper, start)
    } else {
        spawn_pipes(reaper, start)
    }
}

/// Sets the pseudo-terminal `fd`'s window size.
pub(crate) fn resize(fd: i32, rows: u32, cols: u32) {
    let ws = winsize(rows, cols);
    // SAFETY: TIOCSWINSZ reads a winsize from a pointer to a live local.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

fn spawn_pipes(reaper: &Reaper, start: &ExecStart) -> Result<Spawned, Status> {
    let mut cmd = build_command(start)?;
    cmd.stdin(if start.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let (mut child, exit) = reaper
        .spawn(&mut cmd)
        .map_err(|e| spawn_error(&start.argv[0], e))?;
    let to_status = |e: io::Error| Status::internal(format!("exec pipes: {e}"));
    let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> = match child.stdin.take() {
        Some(s) => Some(Box::new(
            pipe::Sender::from_owned_fd(OwnedFd::from(s)).map_err(to_status)?,
        )),
        None => None,
    };
    let out = pipe::Receiver::from_owned_fd(OwnedFd::from(child.stdout.take().expect("piped")))
        .map_err(to_status)?;
    let err = pipe::Receiver::from_owned_fd(OwnedFd::from(child.stderr.take().expect("piped")))
        .map_err(to_status)?;
    Ok(Spawned {
        pid: child.id() as i32,
        exit,
        stdin,
        outputs: vec![(Box::new(out), false), (Box::new(err), true)],
        pty: None,
    })
}

fn winsize(rows: u32, cols: u32) -> libc::winsize {
    libc::winsize {
        ws_row: rows.clamp(1, u16::MAX as u32) as u16,
        ws_col: cols.clamp(1, u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn spawn_tty(reaper: &Reaper, start: &ExecStart) -> Result<Spawned, Status> {
    let mut cmd = build_command(start)?;
    let size = start
        .tty_size
        .unwrap_or(noid::agent::v1::TtySize { rows: 24, cols: 80 });
    let ws = winsize(size.rows, size.cols);
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given locals; the name and termios
    // pointers may be null; `ws` outlives the call.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    if rc != 0 {
        return Err(Status::internal(format!(
            "openpty: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: openpty succeeded, so both are fresh descriptors owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| Status::internal(format!("dup: {e}")))
    };
    cmd.stdin(Stdio::from(dup(&slave)?))
        .stdout(Stdio::from(dup(&slave)?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (child, exit) = reaper
        .spawn(&mut cmd)
        .map_err(|e| spawn_error(&start.argv[0], e))?;
    drop(cmd); // closes the parent's copies of the slave side
    let writer = dup(&master)?;
    let pty = master.as_raw_fd();
    let to_status = |e: io::Error| Status::internal(format!("pty: {e}"));
    let reader = FdStream::new(master, true).map_err(to_status)?;
    let writer = FdStream::new(writer, true).map_err(to_status)?;
    let pty_fd = reader.raw_fd();
    debug_assert_eq!(pty, pty_fd);
    Ok(Spawned {
        pid: child.id() as i32,
        exit,
        stdin: start
            .stdin
            .then(|| Box::new(writer) as Box<dyn AsyncWrite + Send + Unpin>),
        outputs: vec![(Box::new(reader), false)],
        pty: Some(pty_fd),
    })
}

pub(crate) fn signal_group(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; a negative pid addresses the process group.
    unsafe { libc::kill(-pid, sig) };
}

/// Forwards output to the host. When the host has gone, output is still read (and dropped)
/// so that the command never blocks on a full pipe.
async fn pump_output(mut pipe: OutputPipe, stderr: bool, reply: Reply) {
    let mut listening = true;
    while let Some(data) = pipe.next().await {
        if listening {
            let data = data.to_vec();
            let m = if stderr {
                exec_response::Msg::Stderr(data)
            } else {
                exec_response::Msg::Stdout(data)
            };
            listening = reply.send(msg(m)).await.is_ok();
        }
    }
}

/// Applies the host's messages after `start`: stdin, close, signals, resizes.
async fn pump_input(
    mut input: Streaming<ExecRequest>,
    mut stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pid: i32,
    pty: Option<i32>,
) {
    while let Ok(Some(req)) = input.message().await {
        match req.msg {
            Some(exec_request::Msg::Stdin(data)) => {
                if let Some(w) = stdin.as_mut() {
                    if w.write_all(&data).await.is_err() {
                        stdin = None;
                    }
                }
            }
            Some(exec_request::Msg::CloseStdin(_)) => stdin = None,
            Some(exec_request::Msg::Signal(sig)) => signal_group(pid, sig),
            Some(exec_request::Msg::Resize(size)) => {
                if let Some(fd) = pty {
                    resize(fd, size.rows, size.cols);
                }
            }
            Some(exec_request::Msg::Start(_)) | None => {}
        }
    }
    // The host ended its stream: stdin is closed when `stdin` drops here.
}

pub(crate) fn exit_message(status: ExitStatus, timed_out: bool) -> ExecExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExecExit {
            code,
            signal: 0,
            timed_out,
        },
        (None, Some(sig)) => ExecExit {
            code: -1,
            signal: sig,
            timed_out,
        },
        (None, None) => ExecExit {
            code: -1,
            signal: 0,
            timed_out,
        },
    }
}

/// Runs the command described by `start` and streams its life to `reply`.
pub async fn run(reaper: Reaper, start: ExecStart, input: Streaming<ExecRequest>, reply: Reply) {
    let spawned = match spawn(&reaper, &start) {
        Ok(s) => s,
        Err(status) => {
            match shell_exit_code(&status) {
                // As a shell would: the reason on stderr, then exit 127 or 126.
                Some(code) => {
                    let reason = format!("{}\n", status.message()).into_bytes();
                    let _ = reply.send(msg(exec_response::Msg::Stderr(reason))).await;
                    let exit = ExecExit {
                        code,
                        signal: 0,
                        timed_out: false,
                    };
                    let _ = reply.send(msg(exec_response::Msg::Exit(exit))).await;
                }
                None => {
                    let _ = reply.send(Err(status)).await;
                }
            }
            return;
        }
    };
    let pid = spawned.pid;
    let _ = reply
        .send(msg(exec_response::Msg::StartedPid(pid as u32)))
        .await;
    let notice = ExitNotice::new();
    let pumps: Vec<_> = spawned
        .outputs
        .into_iter()
        .map(|(r, is_err)| tokio::spawn(pump_output(notice.pipe(r), is_err, reply.clone())))
        .collect();
    let input_task = tokio::spawn(pump_input(input, spawned.stdin, pid, spawned.pty));

    let mut exit = spawned.exit;
    let timeout = (start.timeout_ms > 0).then(|| Duration::from_millis(start.timeout_ms.into()));
    let mut timed_out = false;
    let status = tokio::select! {
        s = &mut exit => s.ok(),
        _ = sleep_or_forever(timeout) => {
            timed_out = true;
            signal_group(pid, libc::SIGKILL);
            (&mut exit).await.ok()
        }
    };
    notice.exited();
    for p in pumps {
        let _ = p.await;
    }
    input_task.abort();
    let status = status.unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL));
    let _ = reply
        .send(msg(exec_response::Msg::Exit(exit_message(
            status, timed_out,
        ))))
        .await;
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
