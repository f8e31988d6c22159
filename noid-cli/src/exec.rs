//! `noid exec`: streams stdin to a command in the VM and its stdout/stderr back, kept apart,
//! and exits with the command's status. With `-t` the local terminal is put in raw mode and
//! window size changes follow.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use noid::v1::{exec_request, exec_response, ExecRequest, ExecStart, TtySize};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::terminal::{self, RawMode};

pub struct ExecArgs {
    pub vm: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub timeout_secs: Option<f64>,
    pub json: bool,
}

pub fn parse_env(pairs: &[String]) -> Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid -e {p:?}: expected KEY=VALUE"),
        })
        .collect()
}

fn req(msg: exec_request::Msg) -> ExecRequest {
    ExecRequest { msg: Some(msg) }
}

/// Runs the command and returns the exit status this process should end with.
pub async fn run(client: &mut noid::client::Client, args: ExecArgs) -> Result<i32> {
    let env = parse_env(&args.env)?;
    let timeout_ms = match args.timeout_secs {
        // The API counts milliseconds and 0 means none: less than 1 ms would be no limit.
        Some(s) if !(0.001..4_000_000.0).contains(&s) => {
            bail!("--timeout must be from 0.001 up to 4000000 seconds, got {s}")
        }
        Some(s) => (s * 1000.0).round() as u32,
        None => 0,
    };
    let tty = args.tty && !args.json;
    let size = if tty { terminal::size() } else { None };
    let (tx, rx) = mpsc::channel::<ExecRequest>(32);
    tx.send(req(exec_request::Msg::Start(ExecStart {
        vm: args.vm.clone(),
        argv: args.argv.clone(),
        env,
        cwd: args.cwd.clone().unwrap_or_default(),
        stdin: args.interactive,
        tty,
        tty_size: size.map(|(rows, cols)| TtySize { rows, cols }),
        timeout_ms,
        user: args.user.clone().unwrap_or_default(),
    })))
    .await?;
    let _raw = if tty && args.interactive {
        RawMode::enter()
    } else {
        None
    };
    if args.interactive {
        tokio::spawn(forward_stdin(tx.clone()));
    }
    if tty {
        tokio::spawn(forward_resizes(tx.clone()));
    }
    // Ctrl-C stops the remote command (SIGINT to its process group), as it would a local one;
    // a second Ctrl-C leaves without waiting. (In raw mode Ctrl-C is just a byte for the pty.)
    tokio::spawn(forward_interrupts(tx));

    let mut stream = client
        .exec(ReceiverStream::new(rx))
        .await
        .context("exec failed")?
        .into_inner();
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    while let Some(msg) = stream.message().await? {
        match msg.msg {
            Some(exec_response::Msg::Stdout(d)) if args.json => out_buf.extend(d),
            Some(exec_response::Msg::Stderr(d)) if args.json => err_buf.extend(d),
            Some(exec_response::Msg::Stdout(d)) => {
                let mut o = std::io::stdout().lock();
                o.write_all(&d)?;
                o.flush()?;
            }
            Some(exec_response::Msg::Stderr(d)) => {
                let mut e = std::io::stderr().lock();
                e.write_all(&d)?;
                e.flush()?;
            }
            Some(exec_response::Msg::Exit(x)) => {
                drop(_raw);
                let status = if x.timed_out {
                    124
                } else if x.signal != 0 {
                    128 + x.signal
                } else {
                    x.code
                };
                if args.json {
                    crate::output::print_json(&json!({
                        "exit_code": x.code,
                        "signal": x.signal,
                        "timed_out": x.timed_out,
                        "stdout": String::from_utf8_lossy(&out_buf),
                        "stderr": String::from_utf8_lossy(&err_buf),
                    }));
                } else if x.timed_out {
                    eprintln!(
                        "noid: command timed out after {}s and was killed",
                        timeout_ms as f64 / 1000.0
                    );
                }
                return Ok(status);
            }
            Some(exec_response::Msg::Started(_)) | None => {}
        }
    }
    bail!("the exec stream ended without an exit status (connection lost?)")
}

async fn forward_stdin(tx: mpsc::Sender<ExecRequest>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(req(exec_request::Msg::CloseStdin(true))).await;
                return;
            }
            Ok(n) => {
                if tx
                    .send(req(exec_request::Msg::Stdin(buf[..n].to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn forward_interrupts(tx: mpsc::Sender<ExecRequest>) {
    let mut first = true;
    while tokio::signal::ctrl_c().await.is_ok() {
        if !first {
            std::process::exit(130);
        }
        first = false;
        if tx
            .send(req(exec_request::Msg::Signal(libc::SIGINT)))
            .await
            .is_err()
        {
            std::process::exit(130);
        }
    }
}

async fn forward_resizes(tx: mpsc::Sender<ExecRequest>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Some((rows, cols)) = terminal::size() {
            if tx
                .send(req(exec_request::Msg::Resize(TtySize { rows, cols })))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
