//! Exec sessions: `noid exec -d` starts one, `noid ps` lists them, `noid attach` shows what a
//! session printed since it started and follows it (Ctrl-Q detaches from a terminal session,
//! Ctrl-C from any other; the session runs on either way), `noid kill` signals one.

use std::io::Write;

use anyhow::{bail, Context, Result};
use noid::v1::{
    attach_session_request::Msg as In, attach_session_response::Msg as Out, AttachSessionRequest,
    AttachTarget, ExecStart, KillSessionRequest, ListSessionsRequest, Session, StartSessionRequest,
    TtySize,
};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::output;
use crate::terminal::{self, RawMode};

/// Ctrl-Q: detaches from a terminal session.
const DETACH: u8 = 0x11;

/// Starts `start` as a session and prints its id.
pub async fn start(client: &mut noid::client::Client, start: ExecStart, json: bool) -> Result<()> {
    let vm = start.vm.clone();
    let session = client
        .start_session(StartSessionRequest { start: Some(start) })
        .await?
        .into_inner();
    if json {
        output::print_message(&session);
    } else {
        println!("{}", session.id);
        eprintln!(
            "noid: session {} runs in {vm} (pid {}); noid attach {vm} {}",
            session.id, session.pid, session.id
        );
    }
    Ok(())
}

/// "running", "exited 3", "killed by signal 9".
fn state(s: &Session) -> String {
    match &s.exit {
        None => "running".into(),
        Some(x) if x.signal != 0 => format!("killed by signal {}", x.signal),
        Some(x) => format!("exited {}", x.code),
    }
}

pub async fn list(client: &mut noid::client::Client, vm: String, json: bool) -> Result<()> {
    let list = client
        .list_sessions(ListSessionsRequest { vm })
        .await?
        .into_inner();
    if json {
        output::print_message(&list);
        return Ok(());
    }
    println!(
        "{:<5} {:<18} {:<8} {:<12} COMMAND",
        "ID", "STATE", "STARTED", "OUTPUT"
    );
    for s in &list.sessions {
        let kept = if s.dropped_bytes > 0 {
            format!("{}+{}lost", s.buffered_bytes, s.dropped_bytes)
        } else {
            s.buffered_bytes.to_string()
        };
        println!(
            "{:<5} {:<18} {:<8} {:<12} {}{}",
            s.id,
            state(s),
            output::age(s.started_at.as_ref()),
            kept,
            s.argv.join(" "),
            if s.tty { "  (tty)" } else { "" }
        );
    }
    Ok(())
}

/// A signal by number or name (TERM, SIGKILL, int, 9).
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        _ => bail!("unknown signal {s:?} (a number, or HUP, INT, QUIT, KILL, USR1, USR2, TERM, CONT, STOP)"),
    })
}

pub async fn kill(
    client: &mut noid::client::Client,
    vm: String,
    id: u32,
    signal: Option<String>,
    json: bool,
) -> Result<()> {
    let signal = signal
        .as_deref()
        .map(parse_signal)
        .transpose()?
        .unwrap_or(0);
    let session = client
        .kill_session(KillSessionRequest {
            vm: vm.clone(),
            session: id,
            signal,
        })
        .await?
        .into_inner();
    if json {
        output::print_message(&session);
    } else {
        let sig = if signal == 0 { libc::SIGTERM } else { signal };
        println!(
            "sent signal {sig} to session {id} in {vm} ({})",
            state(&session)
        );
    }
    Ok(())
}

fn msg(m: In) -> AttachSessionRequest {
    AttachSessionRequest { msg: Some(m) }
}

/// Attaches to session `id`: its output since it started, then live. Returns the session's
/// exit status once it ends, or 0 when the user detaches.
pub async fn attach(client: &mut noid::client::Client, vm: String, id: u32) -> Result<i32> {
    let (tx, rx) = mpsc::channel::<AttachSessionRequest>(32);
    tx.send(msg(In::Attach(AttachTarget {
        vm: vm.clone(),
        session: id,
    })))
    .await?;
    let sessions = client
        .list_sessions(ListSessionsRequest { vm: vm.clone() })
        .await?
        .into_inner()
        .sessions;
    let tty = sessions.iter().any(|s| s.id == id && s.tty);
    let raw = if tty { RawMode::enter() } else { None };
    let (detach_tx, mut detached) = mpsc::channel::<()>(1);
    tokio::spawn(forward_stdin(tx.clone(), raw.is_some(), detach_tx.clone()));
    if raw.is_some() {
        if let Some((rows, cols)) = terminal::size() {
            let _ = tx.send(msg(In::Resize(TtySize { rows, cols }))).await;
        }
        eprint!("Attached to session {id} in {vm}. Detach with Ctrl-Q.\r\n");
    } else {
        // Ctrl-C detaches; the session is not signalled (noid kill does that).
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = detach_tx.send(()).await;
            }
        });
    }
    let mut stream = client
        .attach_session(ReceiverStream::new(rx))
        .await
        .context("attach failed")?
        .into_inner();
    loop {
        let next = tokio::select! {
            m = stream.message() => m?,
            _ = detached.recv() => {
                drop(raw);
                eprintln!("\nnoid: detached from session {id}; it runs on");
                return Ok(0);
            }
        };
        let Some(m) = next else {
            bail!("the attach stream ended without the session's exit (connection lost?)");
        };
        match m.msg {
            Some(Out::Dropped(n)) => {
                eprint!(
                    "noid: {n} bytes of earlier output were dropped (the buffer keeps 1 MiB)\r\n"
                )
            }
            Some(Out::Stdout(d)) => {
                let mut o = std::io::stdout().lock();
                o.write_all(&d)?;
                o.flush()?;
            }
            Some(Out::Stderr(d)) => {
                let mut e = std::io::stderr().lock();
                e.write_all(&d)?;
                e.flush()?;
            }
            Some(Out::Exit(x)) => {
                drop(raw);
                return Ok(if x.signal != 0 {
                    128 + x.signal
                } else {
                    x.code
                });
            }
            None => {}
        }
    }
}

/// Sends this terminal's input to the session; Ctrl-Q (in raw mode) detaches. The end of
/// local input leaves the session's stdin open: detaching changes nothing in the session.
async fn forward_stdin(
    tx: mpsc::Sender<AttachSessionRequest>,
    raw: bool,
    detach: mpsc::Sender<()>,
) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = &buf[..n];
        if raw {
            if let Some(at) = data.iter().position(|b| *b == DETACH) {
                if at > 0 {
                    let _ = tx.send(msg(In::Stdin(data[..at].to_vec()))).await;
                }
                let _ = detach.send(()).await;
                return;
            }
        }
        if tx.send(msg(In::Stdin(data.to_vec()))).await.is_err() {
            return;
        }
    }
}
