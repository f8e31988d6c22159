//! `noid console` and `noid logs`.

use std::io::Write;
use std::time::SystemTime;

use anyhow::Result;
use noid::v1::{console_request, ConsoleRequest, StreamLogsRequest};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::terminal::RawMode;

/// Ctrl-Q: leaves the console; the VM runs on.
const DETACH: u8 = 0x11;

/// `--since`: an age ("10m": that long ago) or a time (RFC 3339).
pub fn parse_since(s: &str) -> std::result::Result<SystemTime, String> {
    if let Ok(age) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(age)
            .ok_or_else(|| format!("{s} ago is before the clock's start"));
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|_| format!("{s:?} is neither an age (10m, 2h) nor a time (2026-11-30T12:00:00Z)"))
}

pub async fn logs(client: &mut noid::client::Client, request: StreamLogsRequest) -> Result<()> {
    let mut stream = client.stream_logs(request).await?.into_inner();
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.message().await? {
        if let Some(at) = &chunk.time {
            let at = humantime::format_rfc3339_millis(noid::time::to_system(at));
            write!(out, "{at} ")?;
        }
        out.write_all(&chunk.data)?;
        out.flush()?;
    }
    Ok(())
}

pub async fn attach(client: &mut noid::client::Client, vm: String) -> Result<()> {
    let (tx, rx) = mpsc::channel::<ConsoleRequest>(64);
    tx.send(ConsoleRequest {
        msg: Some(console_request::Msg::Vm(vm.clone())),
    })
    .await?;
    let mut stream = client.console(ReceiverStream::new(rx)).await?.into_inner();
    eprint!("Connected to the console of {vm}. Detach with Ctrl-Q.\r\n");
    let resize = |tx: &mpsc::Sender<ConsoleRequest>| {
        if let Some((rows, cols)) = crate::terminal::size() {
            let _ = tx.try_send(ConsoleRequest {
                msg: Some(console_request::Msg::Resize(noid::v1::TtySize {
                    rows,
                    cols,
                })),
            });
        }
    };
    resize(&tx);
    let winch_tx = tx.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut winch) = signal(SignalKind::window_change()) {
            while winch.recv().await.is_some() {
                resize(&winch_tx);
            }
        }
    });
    let raw = RawMode::enter();
    let (detach_tx, mut detach_rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            let n = match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data = &buf[..n];
            let (send, detach) = match data.iter().position(|b| *b == DETACH) {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            if !send.is_empty() {
                let msg = ConsoleRequest {
                    msg: Some(console_request::Msg::Input(send.to_vec())),
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
            if detach {
                break;
            }
        }
        let _ = detach_tx.send(()).await;
    });
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            msg = stream.message() => match msg? {
                Some(m) => {
                    out.write_all(&m.output)?;
                    out.flush()?;
                }
                None => break,
            },
            _ = detach_rx.recv() => break,
        }
    }
    drop(raw);
    eprintln!("\r\nDetached from {vm}; it keeps running.");
    Ok(())
}
