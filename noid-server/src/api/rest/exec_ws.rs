//! `GET /exec/:name` as a WebSocket: a streaming exec, with stdin, stdout and stderr kept
//! apart, resizes and signals, and the exit status at the end. Frames follow Kubernetes'
//! `channel.k8s.io` convention, one channel byte before the data of each binary frame:
//!
//! - client to server: first a text frame with the start, `{"command": [...], "env"?, "cwd"?,
//!   "user"?, "tty"?, "rows"?, "cols"?, "stdin"?, "timeout_secs"?}`; then binary frames on
//!   channel 0 (stdin bytes) and 4 (a resize, `{"rows": R, "cols": C}`), and text frames
//!   `{"signal": N}` and `{"close_stdin": true}`;
//! - server to client: binary frames on channel 1 (stdout) and 2 (stderr), then one text frame
//!   `{"exit_code", "signal", "timed_out"}` (or `{"code", "message"}` if the exec failed), then
//!   a close.

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use axum::Extension;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::exec::exec_timeout;
use super::{caller, ApiError, Gateway};
use crate::core::{CoreError, ExecEvent, ExecInput, ExecSpec, TtySize, User};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const RESIZE: u8 = 4;

/// The start message, the socket's first frame.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    command: Vec<String>,
    #[serde(default)]
    env: HashMap<String, String>,
    cwd: Option<String>,
    user: Option<String>,
    #[serde(default)]
    tty: bool,
    rows: Option<u32>,
    cols: Option<u32>,
    /// Keep the command's stdin open for channel 0.
    #[serde(default)]
    stdin: bool,
    timeout_secs: Option<f64>,
}

/// A text frame from the client after the start.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    signal: Option<i32>,
    #[serde(default)]
    close_stdin: bool,
}

pub(super) fn handler() -> MethodRouter<Gateway> {
    get(exec)
}

async fn exec(
    State(gw): State<Gateway>,
    user: Option<Extension<User>>,
    Path(name): Path<String>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let user = caller(user)?;
    Ok(super::streams::accept(ws).on_upgrade(move |socket| run(gw, user, name, socket)))
}

/// An error as the socket's last text frame: the gateway's JSON error.
fn error_frame(e: &ApiError) -> serde_json::Value {
    json!({
        "code": crate::metrics::grpc_code_name(e.0.code() as i32),
        "message": e.0.message(),
    })
}

/// A failure told on the socket, then the close.
async fn fail(socket: &mut WebSocket, e: ApiError) {
    let _ = socket
        .send(Message::Text(error_frame(&e).to_string()))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}

fn spec(start: Start) -> Result<ExecSpec, CoreError> {
    let tty = start.tty.then(|| TtySize {
        rows: start.rows.unwrap_or(24),
        cols: start.cols.unwrap_or(80),
    });
    Ok(ExecSpec {
        argv: start.command,
        env: start.env,
        cwd: start.cwd,
        stdin: start.stdin,
        tty,
        timeout: exec_timeout(start.timeout_secs)?,
        user: start.user,
    })
}

/// What a client frame after the start asks for; an error names what was wrong.
fn input(msg: Message) -> Result<Option<ExecInput>, String> {
    match msg {
        Message::Binary(b) => match b.split_first() {
            Some((&STDIN, data)) => Ok(Some(ExecInput::Stdin(data.to_vec()))),
            Some((&RESIZE, data)) => {
                let size: TtySizeJson = serde_json::from_slice(data)
                    .map_err(|e| format!("a resize must be {{\"rows\", \"cols\"}}: {e}"))?;
                Ok(Some(ExecInput::Resize(TtySize {
                    rows: size.rows,
                    cols: size.cols,
                })))
            }
            Some((channel, _)) => Err(format!(
                "binary frames go on channel 0 (stdin) or 4 (resize), not {channel}"
            )),
            None => Err("an empty binary frame has no channel".into()),
        },
        Message::Text(t) => {
            let c: Control = serde_json::from_str(&t).map_err(|e| {
                format!("a text frame must be {{\"signal\"}} or {{\"close_stdin\"}}: {e}")
            })?;
            match (c.signal, c.close_stdin) {
                (Some(sig), false) => Ok(Some(ExecInput::Signal(sig))),
                (None, true) => Ok(Some(ExecInput::CloseStdin)),
                _ => Err("a text frame asks for one thing: signal or close_stdin".into()),
            }
        }
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TtySizeJson {
    rows: u32,
    cols: u32,
}

async fn run(gw: Gateway, user: User, name: String, mut socket: WebSocket) {
    let start = match socket.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Start>(&t).map_err(|e| {
            ApiError::invalid(format!(
                "the first frame must be {{\"command\": [...], ...}}: {}",
                noid::names::shorten(&e.to_string())
            ))
        }),
        _ => Err(ApiError::invalid(
            "the first frame must be a text frame with the command",
        )),
    };
    let spec = match start.and_then(|s| spec(s).map_err(ApiError::from)) {
        Ok(spec) => spec,
        Err(e) => return fail(&mut socket, e).await,
    };
    let stdin_open = spec.stdin;
    let (inputs_tx, inputs_rx) = tokio::sync::mpsc::channel::<ExecInput>(16);
    let inputs = tokio_stream::wrappers::ReceiverStream::new(inputs_rx);
    let events = match gw.core.exec(&user, &name, spec, inputs).await {
        Ok(events) => events,
        Err(e) => return fail(&mut socket, e.into()).await,
    };
    let (mut tx, mut rx) = socket.split();
    // The client's frames, until it leaves or sends something that makes no sense.
    let (refused_tx, mut refused) = tokio::sync::oneshot::channel::<String>();
    // As over gRPC, a client that breaks the protocol gets an error, and its command is
    // killed: nothing it sent is silently dropped.
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let why = match input(msg) {
                Ok(Some(ExecInput::Stdin(_))) if !stdin_open => {
                    "stdin was sent for a command started without \"stdin\": true".to_string()
                }
                Ok(Some(i)) => {
                    if inputs_tx.send(i).await.is_err() {
                        break;
                    }
                    continue;
                }
                Ok(None) => continue,
                Err(why) => why,
            };
            let _ = inputs_tx.send(ExecInput::Signal(libc::SIGKILL)).await;
            let _ = refused_tx.send(why);
            break;
        }
    });
    let mut events = Box::pin(events);
    let end = loop {
        let event = tokio::select! {
            e = events.next() => e,
            Ok(why) = &mut refused => break json!({"code": "INVALID_ARGUMENT", "message": why}),
        };
        let (channel, data) = match event {
            Some(Ok(ExecEvent::Stdout(d))) => (STDOUT, d),
            Some(Ok(ExecEvent::Stderr(d))) => (STDERR, d),
            Some(Ok(ExecEvent::Started { .. })) => continue,
            Some(Ok(ExecEvent::Exit(x))) => {
                break json!({"exit_code": x.code, "signal": x.signal, "timed_out": x.timed_out})
            }
            Some(Err(e)) => break error_frame(&ApiError::from(e)),
            None => {
                break json!({"code": "UNAVAILABLE", "message": "the command's stream ended without an exit status"})
            }
        };
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(&data);
        if tx.send(Message::Binary(frame)).await.is_err() {
            // The client left: the command runs on, its output dropped, as with gRPC.
            reader.abort();
            return;
        }
    };
    let _ = tx.send(Message::Text(end.to_string())).await;
    let _ = tx.send(Message::Close(None)).await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_read_by_channel_and_refused_when_they_make_no_sense() {
        assert!(matches!(
            input(Message::Binary(vec![STDIN, b'h', b'i'])),
            Ok(Some(ExecInput::Stdin(d))) if d == b"hi"
        ));
        assert!(matches!(
            input(Message::Binary(
                [&[RESIZE][..], br#"{"rows":40,"cols":100}"#].concat()
            )),
            Ok(Some(ExecInput::Resize(TtySize {
                rows: 40,
                cols: 100
            })))
        ));
        assert!(matches!(
            input(Message::Text(r#"{"signal":2}"#.into())),
            Ok(Some(ExecInput::Signal(2)))
        ));
        assert!(matches!(
            input(Message::Text(r#"{"close_stdin":true}"#.into())),
            Ok(Some(ExecInput::CloseStdin))
        ));
        for bad in [
            Message::Binary(vec![STDOUT, 1]),
            Message::Binary(vec![]),
            Message::Binary(vec![RESIZE, b'x']),
            Message::Text("{}".into()),
            Message::Text(r#"{"signal":2,"close_stdin":true}"#.into()),
            Message::Text(r#"{"command":["ls"]}"#.into()),
        ] {
            assert!(input(bad).is_err());
        }
    }
}
